-- name: batch_get_by_id :many
-- Fetch the users whose ids are in the array (POST /api/v1/users:batchGet {"ids": [...]}), in the order
-- of the array: the handler passes each key once, so each row is one key's user and the answer needs no
-- reordering. One index probe per id. Timestamps leave as UTC without a zone (`AT TIME ZONE 'UTC'`):
-- asyncpg makes them naive datetimes, which the response encodes as UTC (`datasvc.responses`) at half
-- the cost of zone-aware ones, to the same text.
-- params: ids
-- expect-plan: Index Scan using users_pkey on users
-- route: replica
-- retry: safe
SELECT
    users.id, users.email, users.username, users.full_name, users.bio, users.status,
    users.is_verified, users.is_admin,
    users.created_at AT TIME ZONE 'UTC' AS created_at,
    users.updated_at AT TIME ZONE 'UTC' AS updated_at
FROM unnest($1::bigint[]) WITH ORDINALITY AS requested (id, position)
INNER JOIN users ON requested.id = users.id
ORDER BY requested.position
