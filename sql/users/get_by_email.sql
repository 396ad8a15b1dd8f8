-- name: get_by_email :one
-- Fetch one user by email, ignoring case and Unicode form on any cluster: caseless() (migration 0007)
-- is the expression of users_email_caseless_key.
-- params: email
-- expect-plan: Index Scan using users_email_caseless_key on users
-- route: replica
-- retry: safe
-- expect-plan-cache: generic
SELECT
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
FROM users
WHERE caseless(email) = caseless($1)
