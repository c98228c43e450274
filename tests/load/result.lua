-- tests/load/result.lua: what the wrk scripts print at the end of a wrk run: one
-- "wrk-result key=value ..." line that tests/load/bench reads.
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

-- The sums over the threads of the per-thread counters named (globals of each
-- thread's script, read with thread:get()), as "name=N name=N ...", in order.
function result.counts(threads, names)
   local parts = {}
   for _, name in ipairs(names) do
      local sum = 0
      for _, thread in ipairs(threads) do
         sum = sum + (thread:get(name) or 0)
      end
      table.insert(parts, string.format("%s=%d", name, sum))
   end
   return table.concat(parts, " ")
end

return result
