-- PATCH {PREFIX}/{id} changing full_name, id uniform in 1..BENCH_N
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local body = '{"full_name":"Bench Patched"}'
request = function()
  return wrk.format("PATCH", PREFIX .. "/" .. math.random(1, N), JSON, body)
end
