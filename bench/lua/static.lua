-- A fixed URL (the list scenarios): only adds the RESULT line.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

-- With BENCH_TOKENS, each request is formatted anew so that it carries the next token in turn (without
-- a `request` function wrk sends one request, built once, with the first token, to every connection).
if (os.getenv("BENCH_TOKENS") or "") ~= "" then
  request = function()
    return wrk.format(nil, nil)
  end
end
