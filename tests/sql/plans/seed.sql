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

-- name: analyze :exec
-- Fresh statistics after the bulk insert, as autovacuum would eventually gather.
ANALYZE users

-- name: count :value
-- How many users the seed left.
SELECT count(*) FROM users
