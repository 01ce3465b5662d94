local n = 0
function request() n = n % 10000 + 1; return wrk.format("GET", string.format("/c%08d", n)) end
