-- name: update_keyed :one
-- `update` sent with an Idempotency-Key: apply the patch and record the answer in the same statement,
-- or, when the key is known already, change nothing and return what it recorded. Always one row:
--   answer not NULL: updated now, the user as stored;
--   known_status not NULL: the key was used before;
--   otherwise `changed` true: the row is at another version (412), false: no such user (404). Neither
--   is recorded: it changed nothing, and a retry answers the same by itself.
-- params: id, patch, versions, scope, key, fingerprint, ttl_seconds
-- expect-plan: Index Scan using users_pkey on users
WITH known AS (
    SELECT status, answer, fingerprint
    FROM idempotency_keys
    WHERE scope = $4 AND request_key = $5
),

updated AS (
    UPDATE users AS u
    SET (email, full_name, bio, status, is_verified, is_admin) = (
        SELECT p.email, p.full_name, p.bio, p.status, p.is_verified, p.is_admin
        FROM jsonb_populate_record(u, $2::jsonb) AS p
    )
    WHERE
        u.id = $1 AND ($3::bigint[] IS NULL OR u.version = any($3::bigint[]))
        AND NOT EXISTS (SELECT FROM known)
    RETURNING
        u.id, u.email, u.username, u.full_name, u.bio, u.status,
        u.is_verified, u.is_admin, u.created_at, u.updated_at, u.version
),

recorded AS (
    INSERT INTO idempotency_keys (scope, request_key, fingerprint, status, answer, expires_at)
    SELECT
        $4 AS scope, $5 AS request_key, $6 AS fingerprint, 200 AS status, row_to_json(updated) AS answer,
        now() + make_interval(secs => $7) AS expires_at
    FROM updated
)

SELECT
    row_to_json(updated) AS answer,
    (updated.id IS NULL AND $3::bigint[] IS NOT NULL AND before_write.present) AS changed,
    known.status AS known_status,
    known.answer AS known_answer,
    known.fingerprint AS known_fingerprint
FROM (
    SELECT exists(
        SELECT FROM users
        WHERE users.id = $1
    ) AS present
) AS before_write
LEFT JOIN updated ON true
LEFT JOIN known ON true
