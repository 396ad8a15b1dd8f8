-- POST {PREFIX}/ as create.lua, each request with an Idempotency-Key of its own
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local counter = 0
local nonce = ""
local base_init = init
init = function(args)
  base_init(args)
  nonce = string.format("%x%04x", os.time(), math.random(0, 0xffff))
end
local hash = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"  -- 60 chars
request = function()
  counter = counter + 1
  local u = "wrki_" .. nonce .. "_" .. (tid or 0) .. "_" .. counter
  local body = '{"email":"' .. u .. '@bench.example.com","username":"' .. u ..
               '","hashed_password":"' .. hash .. '","full_name":"Bench User"}'
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = '"' .. u .. '"'}
  return wrk.format("POST", PREFIX .. "/", headers, body)
end
