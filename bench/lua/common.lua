-- Shared helpers for the wrk scenarios (ported from ../shared/bench/lua/common.lua).
-- Env: BENCH_N (rows seeded, default 1000000), API_PREFIX (default /api/v1/users).
N = tonumber(os.getenv("BENCH_N") or "1000000")
PREFIX = os.getenv("API_PREFIX") or "/api/v1/users"
JSON = {["Content-Type"] = "application/json"}

-- Must match bench/seed.sql: username = firsts[i % 20] _ lasts[(i / 20) % 20] _ i
local firsts = {"alice","bob","carol","dave","erin","frank","grace","heidi","ivan","judy",
                "mallory","niaj","olivia","peggy","rupert","sybil","trent","victor","walter","zoe"}
local lasts  = {"smith","jones","brown","taylor","wilson","davies","evans","thomas","johnson","roberts",
                "walker","wright","robinson","thompson","white","hughes","edwards","green","hall","wood"}
local domains = {"example.com","example.org","example.net","mail.example.com"}

function username_for(i)
  return firsts[i % 20 + 1] .. "_" .. lasts[math.floor(i / 20) % 20 + 1] .. "_" .. i
end

function email_for(i)
  return firsts[i % 20 + 1] .. "." .. lasts[math.floor(i / 20) % 20 + 1] .. "." .. i .. "@" .. domains[i % 4 + 1]
end

-- A new user, unique across runs, threads and requests: its name <prefix>_<nonce>_<thread>_<counter> (each
-- create scenario its own prefix) and its JSON body. The nonce is drawn at the first call, after init has
-- seeded the random numbers.
local HASH = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"  -- 60 chars
local created = 0
local nonce = nil
function new_user(prefix)
  nonce = nonce or string.format("%x%04x", os.time(), math.random(0, 0xffff))
  created = created + 1
  local u = prefix .. "_" .. nonce .. "_" .. (tid or 0) .. "_" .. created
  return u, '{"email":"' .. u .. '@bench.example.com","username":"' .. u ..
            '","hashed_password":"' .. HASH .. '","full_name":"Bench User"}'
end

-- BENCH_TOKENS (comma list): every request carries one of these bearer tokens, in turn.
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do tokens[#tokens + 1] = token end
if #tokens > 0 then
  local format = wrk.format
  local turn = 0
  wrk.format = function(method, path, headers, body)
    turn = turn % #tokens + 1
    local with = {["Authorization"] = "Bearer " .. tokens[turn]}
    for name, value in pairs(headers or {}) do with[name] = value end
    return format(method, path, with, body)
  end
end

local thread_counter = 0
function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

-- One machine-readable line; bench/load.py parses it.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f "
    .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout))
end
