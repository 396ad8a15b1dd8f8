-- name: batch_get_by_email :many
-- Fetch the users whose emails are in the array, ignoring case and Unicode form as get_by_email does
-- (POST /api/v1/users:batchGet {"emails": [...]}). Each row carries `position`, the 1-based place in the
-- array of the email it matched, and the rows come in that order, so that the handler answers in the
-- order of the request without folding addresses itself: caseless() stays the one rule, in the database.
-- A user matched by two spellings of its address comes back twice; the handler keeps the first.
-- Timestamps as text, as batch_get_by_id gives them.
-- `caseless(email) = any(...)` could use the index but would lose which requested key matched; a join on
-- the unnested array keeps it, probing users_email_caseless_key once per key.
-- params: emails
-- expect-plan: Index Scan using users_email_caseless_key on users
-- route: replica
-- retry: safe
SELECT
    requested.position,
    users.id, users.email, users.username, users.full_name, users.bio, users.status,
    users.is_verified, users.is_admin,
    rpad(created.iso, CASE WHEN length(created.iso) > 19 THEN 26 ELSE 19 END, '0') || '+00:00' AS created_at,
    rpad(updated.iso, CASE WHEN length(updated.iso) > 19 THEN 26 ELSE 19 END, '0') || '+00:00' AS updated_at
FROM unnest($1::text[]) WITH ORDINALITY AS requested (email, position)
INNER JOIN users ON caseless(users.email) = caseless(requested.email)
CROSS JOIN LATERAL (SELECT btrim(to_json(users.created_at AT TIME ZONE 'UTC')::text, '"') AS iso) AS created
CROSS JOIN LATERAL (SELECT btrim(to_json(users.updated_at AT TIME ZONE 'UTC')::text, '"') AS iso) AS updated
ORDER BY requested.position
