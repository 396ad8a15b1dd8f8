-- name: delete_keyed :one
-- `delete` sent with an Idempotency-Key: delete the user and record the 204 in the same statement, or,
-- when the key is known already, delete nothing and return what it recorded (a retried DELETE answers
-- 204 again, not 404). Always one row: id not NULL: deleted now; known_status not NULL: the key was
-- used before; otherwise `changed` true: 412, false: 404 (neither recorded).
-- params: id, versions, scope, key, fingerprint, ttl_seconds
-- expect-plan: Index Scan using users_pkey on users
WITH known AS (
    SELECT status, answer, fingerprint
    FROM idempotency_keys
    WHERE scope = $3 AND request_key = $4
),

deleted AS (
    DELETE FROM users
    WHERE
        id = $1 AND ($2::bigint[] IS NULL OR version = any($2::bigint[]))
        AND NOT EXISTS (SELECT FROM known)
    RETURNING id
),

recorded AS (
    INSERT INTO idempotency_keys (scope, request_key, fingerprint, status, answer, expires_at)
    SELECT
        $3 AS scope, $4 AS request_key, $5 AS fingerprint, 204 AS status, NULL::json AS answer,
        now() + make_interval(secs => $6) AS expires_at
    FROM deleted
)

SELECT
    deleted.id,
    (deleted.id IS NULL AND $2::bigint[] IS NOT NULL AND before_write.present) AS changed,
    known.status AS known_status,
    known.answer AS known_answer,
    known.fingerprint AS known_fingerprint
FROM (
    SELECT exists(
        SELECT FROM users
        WHERE users.id = $1
    ) AS present
) AS before_write
LEFT JOIN deleted ON true
LEFT JOIN known ON true
