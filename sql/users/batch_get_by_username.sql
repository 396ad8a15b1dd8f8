-- name: batch_get_by_username :many
-- Fetch the users whose usernames (exact) are in the array (POST /api/v1/users:batchGet
-- {"usernames": [...]}), in the order of the array (as batch_get_by_id, whose notes on order and
-- timestamps hold here too). One index probe per username.
-- params: usernames
-- expect-plan: Index Scan using users_username_key on users
-- route: replica
-- retry: safe
SELECT
    users.id, users.email, users.username, users.full_name, users.bio, users.status,
    users.is_verified, users.is_admin,
    users.created_at AT TIME ZONE 'UTC' AS created_at,
    users.updated_at AT TIME ZONE 'UTC' AS updated_at
FROM unnest($1::text[]) WITH ORDINALITY AS requested (username, position)
INNER JOIN users ON requested.username = users.username
ORDER BY requested.position
