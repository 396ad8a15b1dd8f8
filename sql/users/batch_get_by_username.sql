-- name: batch_get_by_username :many
-- Fetch the users whose usernames (exact) are in the array (POST /api/v1/users:batchGet
-- {"usernames": [...]}), in the order of the array, timestamps as text (both as batch_get_by_id).
-- One index probe per username.
-- params: usernames
-- expect-plan: Index Scan using users_username_key on users
-- route: replica
-- retry: safe
SELECT
    users.id, users.email, users.username, users.full_name, users.bio, users.status,
    users.is_verified, users.is_admin,
    rpad(created.iso, CASE WHEN length(created.iso) > 19 THEN 26 ELSE 19 END, '0') || '+00:00' AS created_at,
    rpad(updated.iso, CASE WHEN length(updated.iso) > 19 THEN 26 ELSE 19 END, '0') || '+00:00' AS updated_at
FROM unnest($1::text[]) WITH ORDINALITY AS requested (username, position)
INNER JOIN users ON requested.username = users.username
CROSS JOIN LATERAL (SELECT btrim(to_json(users.created_at AT TIME ZONE 'UTC')::text, '"') AS iso) AS created
CROSS JOIN LATERAL (SELECT btrim(to_json(users.updated_at AT TIME ZONE 'UTC')::text, '"') AS iso) AS updated
ORDER BY requested.position
