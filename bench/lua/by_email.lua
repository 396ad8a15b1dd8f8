-- GET {PREFIX}/by_email/{email}, row uniform in 1..BENCH_N
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
request = function()
  return wrk.format("GET", PREFIX .. "/by_email/" .. email_for(math.random(1, N)))
end
