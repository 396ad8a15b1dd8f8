-- name: get_by_username :one
-- Fetch one user by exact username.
-- params: username
-- expect-plan: Index Scan using users_username_key on users
-- route: replica
-- retry: safe
-- expect-plan-cache: generic
SELECT
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
FROM users
WHERE username = $1
