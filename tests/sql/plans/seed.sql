-- name: users :exec
-- n users with distinct usernames and emails (mixed case), a tenth without a full name: enough rows that
-- the planner prefers an index wherever one applies, so a missing index shows up as a Seq Scan.
-- params: n
INSERT INTO users (email, username, hashed_password, full_name, status, created_at)
SELECT
    'User.' || i || '@Example.com',
    'user_' || i,
    repeat('x', 60),
    CASE WHEN i % 10 = 0 THEN NULL ELSE 'Name ' || (i % 1000) END,
    (ARRAY['active', 'inactive', 'suspended'])[1 + i % 3],
    timestamptz '2024-01-01' + i * interval '1 minute'
FROM generate_series(1, $1::integer) AS i

-- name: keys :exec
-- n recorded Idempotency-Keys of 4 callers, a tenth of them expired: a table the size a busy day leaves,
-- so the keyed writes' lookup of their key and the purge show the access path they take in service.
-- params: n
INSERT INTO idempotency_keys (scope, request_key, fingerprint, status, answer, expires_at)
SELECT
    'caller_' || i % 4,
    'key-' || i,
    sha256(i::text::bytea),
    201,
    json_build_object('id', i),
    now() + CASE WHEN i % 10 = 0 THEN -1 ELSE 1 END * i * interval '1 second'
FROM generate_series(1, $1::integer) AS i

-- name: analyze :exec
-- Fresh statistics after the bulk insert, as autovacuum would eventually gather.
ANALYZE users, idempotency_keys

-- name: count :value
-- How many users the seed left.
SELECT count(*) FROM users
