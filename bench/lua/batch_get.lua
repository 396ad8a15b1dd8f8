-- POST {PREFIX}:batchGet with BATCH (default 100) ids uniform in 1..BENCH_N
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
local size = tonumber(os.getenv("BATCH") or "100")
request = function()
  local ids = {}
  for i = 1, size do ids[i] = math.random(1, N) end
  return wrk.format("POST", PREFIX .. ":batchGet", JSON, '{"ids":[' .. table.concat(ids, ",") .. ']}')
end
