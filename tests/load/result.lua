-- tests/load/result.lua: what product.lua and checkout.lua print at the end of a
-- wrk run: one "wrk-result key=value ..." line that tests/load/bench reads.
local result = {}

-- extra: further "key=value" text to append (a script's own counts), or nil.
function result.write(summary, latency, extra)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "wrk-result requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f"
         .. " max_ms=%.3f errors_connect=%d errors_read=%d errors_write=%d errors_timeout=%d"
         .. " non2xx=%d bytes=%d%s\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      e.connect, e.read, e.write, e.timeout, e.status, summary.bytes, extra and (" " .. extra) or ""))
end

return result
