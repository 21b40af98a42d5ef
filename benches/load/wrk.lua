-- wrk script of the load harness (benches/load/run.sh).
--
-- Always: done() prints one line, `WRK_JSON {...}`, with the request count, the count of
-- responses with status >= 400 and of socket errors, and the latency percentiles wrk recorded
-- (p50, p75, p90, p99, p99.9, max, in microseconds) — `--latency` prints no p99.9.
--
-- With an argument (`wrk ... -s wrk.lua URL -- PREFIX`): a fresh DPoP proof per request. Thread
-- N reads `PREFIX-N.txt`, one pre-minted proof per line, and sends each proof exactly once, in
-- a `DPoP` header next to the `Authorization` header given with -H. When a file runs out the
-- request goes without a proof (the proxy answers 401, counted as an error) and the shortfall
-- is reported as `proofs_exhausted`, so a short supply shows in the results instead of being
-- reused.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  thread:set("exhausted", 0)
  table.insert(threads, thread)
end

function init(args)
  local prefix = args[1]
  if prefix == nil then
    return
  end
  local file = assert(io.open(prefix .. "-" .. id .. ".txt", "r"))
  -- Defined here, so runs without proofs keep wrk's static request (no Lua per request).
  request = function()
    local proof = file:read("*l")
    if proof == nil then
      exhausted = exhausted + 1
      wrk.headers["DPoP"] = nil
    else
      wrk.headers["DPoP"] = proof
    end
    return wrk.format()
  end
end

function done(summary, latency, requests)
  local exhausted = 0
  for _, thread in ipairs(threads) do
    exhausted = exhausted + (thread:get("exhausted") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f,"proofs_exhausted":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean, exhausted))
end
