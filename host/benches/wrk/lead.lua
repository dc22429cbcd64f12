-- wrk script for host/benches/wrk/run.sh: POSTs one distinct, realistic lead
-- per request (its own email and a valid US phone from a counter; names from
-- short lists, so namesakes fill the dedupe blocks as real names do).
--   wrk -t2 -c64 -d10s --latency -s lead.lua URL [API_KEY]
local first = {"ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances",
               "edsger", "radia", "donald", "hedy", "alan", "karen", "niklaus", "sophie"}
local last = {"lovelace", "hopper", "torvalds", "liskov", "thompson", "hamilton", "ritchie", "allen",
              "dijkstra", "perlman", "knuth", "lamarr", "turing", "jones", "wirth", "wilson"}
local threads = 0
counter = 0

-- Each thread counts from its own offset: no two requests carry one person.
function setup(thread)
  thread:set("offset", threads * 3000000)
  threads = threads + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[1] then
    wrk.headers["Authorization"] = "Bearer " .. args[1]
  end
end

local function title(s)
  return (s:gsub("^%l", string.upper))
end

function request()
  counter = counter + 1
  local i = offset + counter
  local f, l = first[i % 16 + 1], last[math.floor(i / 16) % 16 + 1]
  local body = string.format(
    '{"email":"%s.%s.%d@example.com","phone":"+1415%07d","first_name":"%s","last_name":"%s",' ..
    '"company":"Firm %d Holdings","title":"Buyer","city":"Boston","country":"US"}',
    f, l, i, 2000000 + i, title(f), title(l), math.floor(i / 256))
  return wrk.format(nil, nil, nil, body)
end
