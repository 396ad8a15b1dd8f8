-- POST {PREFIX}:batchCreate with BATCH (default 100) new users, unique as create.lua's
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local size = tonumber(os.getenv("BATCH") or "100")
local counter = 0
local nonce = ""
local base_init = init
init = function(args)
  base_init(args)
  nonce = string.format("%x%04x", os.time(), math.random(0, 0xffff))
end
local hash = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"  -- 60 chars
request = function()
  local users = {}
  for i = 1, size do
    counter = counter + 1
    local u = "wrkb_" .. nonce .. "_" .. (tid or 0) .. "_" .. counter
    users[i] = '{"email":"' .. u .. '@bench.example.com","username":"' .. u ..
               '","hashed_password":"' .. hash .. '","full_name":"Bench User"}'
  end
  return wrk.format("POST", PREFIX .. ":batchCreate", JSON, '{"users":[' .. table.concat(users, ",") .. ']}')
end
