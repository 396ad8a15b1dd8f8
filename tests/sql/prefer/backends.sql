-- name: backends :many
-- The service's backends on this (per-test) database whose last statement was one of the users
-- resource's, their pid and state, in pid order: the pooled connections that served requests, not
-- the change feed's LISTEN connection (datasvc/listener.py).
-- params: admin_name
SELECT pid, state
FROM pg_stat_activity
WHERE
    datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
    AND query LIKE '/* users.%'
ORDER BY pid
