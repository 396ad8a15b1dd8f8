-- name: create_keyed :one
-- `create` sent with an Idempotency-Key: insert the user and record the answer in the same statement,
-- or, when the key is known already, insert nothing and return what it recorded. Always one row:
--   answer not NULL: created now, the user as stored (row_to_json: also what the record holds);
--   known_status not NULL: the key was used before (the service compares the fingerprints).
-- A concurrent request with the same key waits for this one's commit on the users' unique indexes or
-- the key's, then fails with 23505 and reads the record (idempotency.get).
-- params: email, username, hashed_password, full_name, bio, scope, key, fingerprint, ttl_seconds
-- expect-plan: Insert on users
WITH known AS (
    SELECT status, answer, fingerprint
    FROM idempotency_keys
    WHERE scope = $6 AND request_key = $7
),

created AS (
    INSERT INTO users (email, username, hashed_password, full_name, bio)
    SELECT $1 AS email, $2 AS username, $3 AS hashed_password, $4 AS full_name, $5 AS bio
    WHERE NOT EXISTS (SELECT FROM known)
    RETURNING
        id, email, username, full_name, bio, status,
        is_verified, is_admin, created_at, updated_at, version
),

recorded AS (
    INSERT INTO idempotency_keys (scope, request_key, fingerprint, status, answer, expires_at)
    SELECT
        $6 AS scope, $7 AS request_key, $8 AS fingerprint, 201 AS status, row_to_json(created) AS answer,
        now() + make_interval(secs => $9) AS expires_at
    FROM created
)

SELECT
    row_to_json(created) AS answer,
    known.status AS known_status,
    known.answer AS known_answer,
    known.fingerprint AS known_fingerprint
FROM (SELECT 1) AS one
LEFT JOIN created ON true
LEFT JOIN known ON true
