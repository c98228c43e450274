-- tests/load/hold.lua: wrk script for the holds of the Sales API (docs/design.md
-- §4.1 "Holds"), one hot sku, two modes:
--
--   HOLD_IDS=<folder> wrk -t2 -c64 -d10s -s tests/load/hold.lua http://127.0.0.1:8080
--     POST /holds {"lines":[{"sku":"CP-502101","quantity":1}]} (HOLD_SKU overrides
--     the sku; HOLD_TTL=<seconds> adds a ttl, else the server's hold_ttl). 201 is a
--     hold; with HOLD_IDS each thread appends its holds' ids, one a line, to
--     <folder>/ids.<thread>, for the confirm mode.
--
--   CONFIRM_IDS=<folder> wrk ... -s tests/load/hold.lua ...
--     POST /holds/{id}/confirm, thread n confirming the ids of <folder>/ids.<n> in
--     their order, each once: 200 is a confirmed hold. A thread that runs out of
--     ids starts over (a repeated confirm is a replayed answer, cheaper than a
--     first one) and counts those requests as reused: the bench made too few.
--
-- Every other status is counted as other. done() prints one "wrk-result key=value
-- ..." line that tests/load/bench reads.

-- result.lua lies next to this script, wherever wrk is started from.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local result = require("result")

local confirm_dir = os.getenv("CONFIRM_IDS")
local ids_dir = os.getenv("HOLD_IDS")
local ttl = os.getenv("HOLD_TTL")

wrk.method = "POST"
if confirm_dir == nil then
   wrk.path = "/holds"
   wrk.body = string.format('{"lines":[{"sku":"%s","quantity":1}]%s}',
                            os.getenv("HOLD_SKU") or "CP-502101",
                            ttl ~= nil and (',"ttl":' .. ttl) or "")
   wrk.headers["Content-Type"] = "application/json"
end

-- Globals, one set per wrk thread: done() reads them with thread:get().
status_200 = 0
status_201 = 0
status_other = 0
reused = 0

local threads = {}
local out = nil -- this thread's file of ids made (HOLD_IDS)
local ids = {}  -- this thread's ids to confirm (CONFIRM_IDS)
local next_id = 0

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

function init(args)
   if confirm_dir ~= nil then
      local f = io.open(string.format("%s/ids.%d", confirm_dir, thread_id), "r")
      if f ~= nil then
         for line in f:lines() do
            table.insert(ids, line)
         end
         f:close()
      end
   elseif ids_dir ~= nil then
      out = assert(io.open(string.format("%s/ids.%d", ids_dir, thread_id), "a"))
   end
end

if confirm_dir ~= nil then
   function request()
      next_id = next_id + 1
      if next_id > #ids then
         reused = reused + 1
      end
      -- None at all: an id no hold has (404, other), so that the run shows it.
      local id = #ids > 0 and ids[(next_id - 1) % #ids + 1] or "00000000-0000-4000-8000-000000000000"
      return wrk.format(nil, "/holds/" .. id .. "/confirm")
   end
end

function response(status, headers, answer)
   if status == 201 and confirm_dir == nil then
      status_201 = status_201 + 1
      if out ~= nil and answer ~= nil then
         -- The whole line in one write; the process's exit flushes the rest.
         local id = string.match(answer, '"hold":"([%x%-]+)"')
         if id ~= nil then
            out:write(id .. "\n")
         end
      end
   elseif status == 200 and confirm_dir ~= nil then
      status_200 = status_200 + 1
   else
      status_other = status_other + 1
   end
end

function done(summary, latency, requests)
   result.write(summary, latency,
                result.counts(threads, {"status_200", "status_201", "status_other", "reused"}))
end
