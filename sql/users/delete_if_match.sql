-- name: delete_if_match :value
-- Delete one user only if it is still at one of the versions the caller saw (If-Match); returns its id,
-- or NULL when no row matched (no such user, or it changed since).
-- params: id, versions
-- plan: Index Scan using users_pkey on users
DELETE FROM users
WHERE id = $1 AND updated_at = any($2::timestamptz[])
RETURNING id
