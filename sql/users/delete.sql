-- name: delete :one
-- Delete one user, only if it is still at one of the caller's versions when versions is not NULL
-- (If-Match), and say in the same round trip what happened. Always one row:
--   id not NULL: deleted; id NULL, changed true: the row exists at another version (412);
--   id NULL, changed false: no such user (404). `changed` reads the statement's snapshot.
-- params: id, versions
-- expect-plan: Index Scan using users_pkey on users
-- expect-plan-cache: generic
WITH deleted AS (
    DELETE FROM users
    WHERE id = $1 AND ($2::bigint[] IS NULL OR version = any($2::bigint[]))
    RETURNING id
)

SELECT
    deleted.id,
    (
        deleted.id IS NULL AND $2::bigint[] IS NOT NULL
        AND before_write.present
    ) AS changed
FROM (
    SELECT exists(
        SELECT FROM users
        WHERE users.id = $1
    ) AS present
) AS before_write
LEFT JOIN deleted ON true
