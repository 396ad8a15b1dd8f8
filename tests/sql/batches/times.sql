-- name: set_created_at :exec
-- Give a user a creation time of the test's choosing: whole seconds, or a fraction with trailing zeros,
-- which the text forms of a timestamp write differently.
-- params: id, at
UPDATE users SET created_at = $2 WHERE id = $1
