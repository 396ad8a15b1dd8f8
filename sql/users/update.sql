-- name: update :one
-- Apply a partial update, only if the row is still at one of the caller's versions when versions is
-- not NULL (If-Match), and say in the same round trip what happened. Always one row:
--   id not NULL: updated, the row as stored (the trigger bumps version and updated_at);
--   id NULL, changed true: the row exists but at another version (412);
--   id NULL, changed false: no such user (404).
-- The version check is part of the UPDATE, so of writers holding the same version exactly one wins.
-- jsonb_populate_record overlays the patch's keys on the row itself: an absent key keeps the column,
-- JSON null clears it. `changed` reads the statement's snapshot, which the UPDATE's own change is not
-- part of; a row deleted by someone else meanwhile reads as changed to a conditional write (it did).
-- params: id, patch, versions
-- expect-plan: Index Scan using users_pkey on users
-- expect-plan-cache: generic
WITH updated AS (
    UPDATE users AS u
    SET (email, full_name, bio, status, is_verified, is_admin) = (
        SELECT p.email, p.full_name, p.bio, p.status, p.is_verified, p.is_admin
        FROM jsonb_populate_record(u, $2::jsonb) AS p
    )
    WHERE u.id = $1 AND ($3::bigint[] IS NULL OR u.version = any($3::bigint[]))
    RETURNING
        u.id, u.email, u.username, u.full_name, u.bio, u.status,
        u.is_verified, u.is_admin, u.created_at, u.updated_at, u.version
)

SELECT
    updated.id, updated.email, updated.username, updated.full_name, updated.bio, updated.status,
    updated.is_verified, updated.is_admin, updated.created_at, updated.updated_at, updated.version,
    (
        updated.id IS NULL AND $3::bigint[] IS NOT NULL
        AND before_write.present
    ) AS changed
FROM (
    SELECT exists(
        SELECT FROM users
        WHERE users.id = $1
    ) AS present
) AS before_write
LEFT JOIN updated ON true
