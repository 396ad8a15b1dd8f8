-- name: update_if_match :one
-- Apply a partial update only if the row is still at one of the versions the caller saw (If-Match):
-- the check is part of the UPDATE, so of concurrent writers holding the same version exactly one wins.
-- NULL when no row matched (no such user, or it changed since); the caller tells 404 from 412.
-- jsonb_populate_record overlays the patch's keys on the row itself: an absent key keeps the column,
-- JSON null clears it. The trigger bumps updated_at, which is the next version.
-- params: id, patch, versions
-- plan: Index Scan using users_pkey on users
UPDATE users AS u
SET (email, full_name, bio, status, is_verified, is_admin) = (
    SELECT p.email, p.full_name, p.bio, p.status, p.is_verified, p.is_admin
    FROM jsonb_populate_record(u, $2::jsonb) AS p
)
WHERE u.id = $1 AND u.updated_at = any($3::timestamptz[])
RETURNING
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at
