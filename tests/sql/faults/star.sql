-- name: select_star :one
-- Deliberately `SELECT *` (forbidden in sql/): its result type changes when a column is added, so
-- a cached prepared statement goes stale, which is what the live-migration test provokes.
-- params: id
SELECT * FROM users WHERE id = $1
