-- POST /api/v1/auth/lookup with a random login: the username of row i, or its email for odd i
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
request = function()
  local i = math.random(1, N)
  local login = (i % 2 == 0) and username_for(i) or email_for(i)
  return wrk.format("POST", "/api/v1/auth/lookup", JSON, '{"login":"' .. login .. '"}')
end
