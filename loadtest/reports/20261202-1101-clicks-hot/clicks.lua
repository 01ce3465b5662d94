-- A random one of the 1 codes.
local method = "GET"
function init(args) math.randomseed(os.time() + math.random(1000)) end
local agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
function request()
  return wrk.format(method, string.format("/c%08d", math.random(1, 1)), { ["User-Agent"] = agent })
end
