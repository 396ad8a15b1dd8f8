-- POST {PREFIX}/ with unique username/email: wrk_<nonce>_<thread>_<counter> (common.lua's new_user)
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
request = function()
  local _, body = new_user("wrk")
  return wrk.format("POST", PREFIX .. "/", JSON, body)
end
