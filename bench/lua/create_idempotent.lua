-- POST {PREFIX}/ as create.lua, each request with an Idempotency-Key of its own
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
request = function()
  local u, body = new_user("wrki")
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = '"' .. u .. '"'}
  return wrk.format("POST", PREFIX .. "/", headers, body)
end
