-- tests/load/product.lua: wrk script for GET /product/donut, the product read of
-- the Sales API (the first version's load scenario for reads).
--
--   wrk -t2 -c64 -d10s -s tests/load/product.lua http://127.0.0.1:8080
--
-- WRK_PATH overrides the path (tests/load/bench measures nginx's fixed answer
-- with it, so that both runs pay for the same script). No response() hook: with
-- one, wrk hands every response's headers to Lua, which costs the load generator
-- CPU that this 2-core machine's servers need; wrk counts non-2xx answers itself.
-- done() prints one "wrk-result key=value ..." line that tests/load/bench reads.

-- result.lua lies next to this script, wherever wrk is started from.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")

wrk.method = "GET"
wrk.path = os.getenv("WRK_PATH") or "/product/donut"

function done(summary, latency, requests)
   result.write(summary, latency, nil)
end
