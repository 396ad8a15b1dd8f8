-- POST {PREFIX}:batchCreate with BATCH (default 100) new users, unique as create.lua's
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local size = tonumber(os.getenv("BATCH") or "100")
request = function()
  local users = {}
  for i = 1, size do
    local _, user = new_user("wrkb")
    users[i] = user
  end
  return wrk.format("POST", PREFIX .. ":batchCreate", JSON, '{"users":[' .. table.concat(users, ",") .. ']}')
end
