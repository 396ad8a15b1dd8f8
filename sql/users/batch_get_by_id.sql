-- name: batch_get_by_id :many
-- Fetch the users whose ids are in the array (POST /api/v1/users:batchGet {"ids": [...]}), in no
-- particular order: the handler answers in the order of the request. One index probe per id.
-- params: ids
-- expect-plan: Index Scan using users_pkey on users
-- route: replica
-- retry: safe
SELECT
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
FROM users
WHERE id = any($1::bigint[])
