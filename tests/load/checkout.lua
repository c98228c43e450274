-- tests/load/checkout.lua: wrk script for POST /checkout, the first version's k6
-- checkout scenario rewritten for wrk: every virtual user buys one donut, with
-- the body the first version's scripts sent.
--
--   wrk -t2 -c64 -d10s -s tests/load/checkout.lua http://127.0.0.1:8080
--
-- CHECKOUT_BODY overrides the body; CHECKOUT_BODY=empty sends none (an empty
-- body buys one CP-502101, as the first version did). WRK_PATH overrides the path.
-- CHECKOUT_KEYS=<prefix> sends every request with an Idempotency-Key of its own,
-- <prefix>-<start second>-<thread>-<n> (the keyed checkout: a transaction each, no
-- batching; runs started a second apart or more never replay each other's keys).
-- CART_SKUS=<sku>,<sku>,... sends carts instead: each request 3 lines of quantity 1,
-- 3 distinct skus of the list picked at random (at least 3 skus).
-- Statuses are counted, so that "zero oversold" can be checked against the
-- stock: 200 (sold), 409 (sold out), anything else; "sold" counts the answers
-- whose body says 구매 완료, because the first version answered 200 to a failed
-- purchase too. done() prints one "wrk-result key=value ..." line that
-- tests/load/bench reads.

-- result.lua lies next to this script, wherever wrk is started from.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")

local body = os.getenv("CHECKOUT_BODY") or '{"MessageAttributeFactoryId":"FF-500293"}'
if body == "empty" then
   body = nil
end

wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/checkout"
wrk.body = body
if body ~= nil then
   wrk.headers["Content-Type"] = "application/json"
end

local key_prefix = os.getenv("CHECKOUT_KEYS")
if key_prefix ~= nil then
   key_prefix = key_prefix .. "-" .. os.time()
end

-- Globals, one set per wrk thread: done() reads them with thread:get().
status_200 = 0
status_409 = 0
status_other = 0
sold = 0

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

local cart_skus = nil
if os.getenv("CART_SKUS") ~= nil then
   cart_skus = {}
   for sku in string.gmatch(os.getenv("CART_SKUS"), "[^,]+") do
      table.insert(cart_skus, sku)
   end
   if #cart_skus < 3 then
      error("CART_SKUS: at least 3 skus, comma-separated")
   end
end

function init(args)
   math.randomseed(os.time() * 100 + thread_id)
end

-- 3 distinct skus of cart_skus (the first 3 of a partial Fisher-Yates shuffle).
local function cart_body()
   local n = #cart_skus
   for i = 1, 3 do
      local j = math.random(i, n)
      cart_skus[i], cart_skus[j] = cart_skus[j], cart_skus[i]
   end
   return string.format('{"lines":[{"sku":"%s","quantity":1},{"sku":"%s","quantity":1},'
                           .. '{"sku":"%s","quantity":1}]}', cart_skus[1], cart_skus[2],
                        cart_skus[3])
end

if key_prefix ~= nil or cart_skus ~= nil then
   local sent = 0
   function request()
      sent = sent + 1
      if key_prefix ~= nil then
         -- Zero-padded: an anonymous key is 16 characters at least (issue 18).
         wrk.headers["Idempotency-Key"] = string.format("%s-%08d-%012d", key_prefix, thread_id,
                                                        sent)
      end
      return wrk.format(nil, nil, nil, cart_skus ~= nil and cart_body() or nil)
   end
end

function response(status, headers, answer)
   if status == 200 then
      status_200 = status_200 + 1
   elseif status == 409 then
      status_409 = status_409 + 1
   else
      status_other = status_other + 1
   end
   if status == 200 and answer ~= nil and string.find(answer, "구매 완료", 1, true) then
      sold = sold + 1
   end
end

function done(summary, latency, requests)
   result.write(summary, latency,
                result.counts(threads, {"status_200", "status_409", "status_other", "sold"}))
end
