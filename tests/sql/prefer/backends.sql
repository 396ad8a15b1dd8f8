-- name: backends :many
-- The service's backends on this (per-test) database, their pid and state, in pid order.
-- params: admin_name
SELECT pid, state
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
ORDER BY pid
