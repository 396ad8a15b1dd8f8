-- name: get_by_email :one
-- Fetch one user by email, ignoring case (the expression matches users_email_lower_key).
-- params: email
-- plan: Index Scan using users_email_lower_key on users
-- route: replica
-- retry: safe
-- plan-cache: generic
SELECT
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
FROM users
WHERE lower(email) = lower($1)
