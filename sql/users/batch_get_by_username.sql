-- name: batch_get_by_username :many
-- Fetch the users whose usernames (exact) are in the array (POST /api/v1/users:batchGet
-- {"usernames": [...]}), in no particular order: the handler answers in the order of the request.
-- params: usernames
-- expect-plan: Index Scan using users_username_key on users
-- route: replica
-- retry: safe
SELECT
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
FROM users
WHERE username = any($1::text[])
