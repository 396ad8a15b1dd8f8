-- Fill datasvc's users table (created by our migrations) with :n deterministic rows.
--   psql -v n=1000000 -f bench/seed.sql      (bench/run.py does this when the row count is not N)
-- Adapted from ../shared/bench/seed_data.sql for our schema: identity id (OVERRIDING SYSTEM VALUE keeps
-- ids 1..n for the wrk scripts), text columns, unique caseless(email). Row i always gets the same values:
--   username = <first>_<last>_<i>           e.g. alice_smith_42
--   email    = <first>.<last>.<i>@<domain>  e.g. alice.smith.42@example.com
--   first = firsts[i % 20], last = lasts[(i / 20) % 20]   (0-based; lua/common.lua mirrors this)
-- status ~80% active / 15% inactive / 5% suspended; created_at grows with id over the last 3 years
-- (plus up to 1 h jitter); 60-character bcrypt-like hashes. ~30 s for 1M rows on 2 cores.
\set ON_ERROR_STOP on
\if :{?n}
\else
  \set n 1000000
\endif

TRUNCATE users RESTART IDENTITY;
SELECT setseed(0.42);

INSERT INTO users (id, email, username, hashed_password, full_name, bio, status,
                   is_verified, is_admin, created_at, updated_at)
OVERRIDING SYSTEM VALUE
SELECT i,
       f || '.' || l || '.' || i || '@' || (ARRAY['example.com','example.org','example.net','mail.example.com'])[1 + i % 4],
       f || '_' || l || '_' || i,
       '$2b$12$' || substr(translate(encode(sha512(('pw' || i)::bytea), 'base64'), '+', '.'), 1, 53),
       CASE WHEN r1 < 0.10 THEN NULL ELSE initcap(f) || ' ' || initcap(l) END,
       CASE WHEN r2 < 0.50 THEN NULL
            ELSE 'Hi, I am ' || initcap(f) || '. ' || repeat('I like databases. ', 1 + (i % 5)) END,
       CASE WHEN r3 < 0.80 THEN 'active' WHEN r3 < 0.95 THEN 'inactive' ELSE 'suspended' END,
       r4 < 0.70,
       r4 < 0.001,
       c,
       CASE WHEN r2 < 0.30 THEN c ELSE c + (now() - c) * r1 END
FROM (
    SELECT i,
           (ARRAY['alice','bob','carol','dave','erin','frank','grace','heidi','ivan','judy',
                  'mallory','niaj','olivia','peggy','rupert','sybil','trent','victor','walter','zoe'])[1 + i % 20] AS f,
           (ARRAY['smith','jones','brown','taylor','wilson','davies','evans','thomas','johnson','roberts',
                  'walker','wright','robinson','thompson','white','hughes','edwards','green','hall','wood'])[1 + (i / 20) % 20] AS l,
           random() AS r1, random() AS r2, random() AS r3, random() AS r4,
           now() - interval '3 years'
                 + (interval '3 years') * (i::float8 / :n)
                 - interval '1 hour' * random() AS c
    FROM generate_series(1, :n) AS i
) s;

SELECT setval(pg_get_serial_sequence('users', 'id'), :n);
VACUUM (ANALYZE) users;
