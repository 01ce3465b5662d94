-- The load harness's request generator for wrk (loadtest/harness.sh). Arguments after `--`:
--   MODE CODES_FILE [XFF_CLIENTS]
-- and the environment variable WRK_RESULT (done() runs in wrk's main Lua state, which never
-- sees the arguments).
-- MODE: hot (one code), hotset (the first 100 codes, uniformly), zipf (every code, Zipf-popular
-- with s = 1: rank k with probability ~ 1/k), mixed (zipf redirects ~95 %, creates ~4 %,
-- stats ~1 %), walk (every code in turn, each thread its share: fills the Redis tier before a
-- run with TIERS=full). XFF_CLIENTS > 0: each request carries X-Forwarded-For from that many
-- addresses (10.x.y.z), for runs with the per-client limiter on. WRK_RESULT: where done()
-- writes the latency percentiles and the counts as JSON.
local mode, codes, clients = "hot", {}, 0
local cdf = nil
local counter = 0

local function zipf_cdf(n)
  local weights, total = {}, 0
  for k = 1, n do
    total = total + 1 / k
    weights[k] = total
  end
  for k = 1, n do weights[k] = weights[k] / total end
  return weights
end

local function zipf_index()
  local u = math.random()
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  thread:set("nthreads", #threads + 1)
  table.insert(threads, thread)
  for _, t in ipairs(threads) do t:set("nthreads", #threads) end
end

function init(args)
  mode = args[1] or "hot"
  for line in io.lines(args[2]) do codes[#codes + 1] = line end
  clients = tonumber(args[3] or "0") or 0
  math.randomseed(os.time() + (id or 0) * 7919)
  if mode == "zipf" or mode == "mixed" then cdf = zipf_cdf(#codes) end
end

local function headers()
  if clients <= 0 then return {} end
  counter = counter + 1
  local n = (counter * 7 + (id or 0) * 104729) % clients
  return { ["X-Forwarded-For"] = string.format("10.%d.%d.%d",
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256) }
end

function request()
  local h = headers()
  if mode == "hot" then
    return wrk.format("GET", "/" .. codes[1], h)
  elseif mode == "hotset" then
    return wrk.format("GET", "/" .. codes[math.random(1, math.min(100, #codes))], h)
  elseif mode == "zipf" then
    return wrk.format("GET", "/" .. codes[zipf_index()], h)
  elseif mode == "walk" then
    counter = counter + 1
    local n = nthreads or 1
    local index = ((counter - 1) * n + ((id or 1) - 1)) % #codes + 1
    return wrk.format("GET", "/" .. codes[index], h)
  end
  local roll = math.random()
  if roll < 0.04 then
    counter = counter + 1
    h["Content-Type"] = "application/json"
    local body = string.format('{"url":"https://example.com/created/%d/%d"}', id or 0, counter)
    return wrk.format("POST", "/shorten", h, body)
  elseif roll < 0.05 then
    return wrk.format("GET", "/" .. codes[zipf_index()] .. "/stats", h)
  end
  return wrk.format("GET", "/" .. codes[zipf_index()], h)
end

function done(summary, latency, requests)
  local result_file = os.getenv("WRK_RESULT")
  if not result_file then return end
  local file = io.open(result_file, "w")
  local function p(q) return latency:percentile(q) end
  file:write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"max_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d}\n',
    summary.requests, summary.duration, p(50), p(90), p(99), p(99.9), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
  file:close()
end
