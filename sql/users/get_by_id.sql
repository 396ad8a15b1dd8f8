-- name: get_by_id :one
-- Fetch one user by primary key.
-- params: id
-- expect-plan: Index Scan using users_pkey on users
-- route: replica
-- retry: safe
-- expect-plan-cache: generic
SELECT
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
FROM users
WHERE id = $1
