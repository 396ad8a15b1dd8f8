-- name: count :value
-- Client backends of this (per-test) database other than the test's own connections: the service's pool,
-- not the change feed's dedicated LISTEN connection (datasvc/listener.py names it "<name>/listener").
-- params: admin_name
SELECT count(*)
FROM pg_stat_activity
WHERE
    datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
    AND application_name NOT LIKE '%/listener'

-- name: busy :many
-- The service's backends that are not idle: running, waiting on a lock, or inside a transaction.
-- params: admin_name
SELECT pid, state, wait_event_type, left(query, 80) AS query
FROM pg_stat_activity
WHERE
    datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
    AND state <> 'idle'

-- name: terminate :many
-- Kill the service's backends (what an operator or a failover does); returns their pids.
-- The CTE is MATERIALIZED so the filter runs first: in a flat WHERE the planner may call
-- pg_terminate_backend on rows of other databases before checking datname (it did, killing every
-- session on the server, including other test runs and the benchmark).
-- params: admin_name
WITH victims AS MATERIALIZED (
    SELECT pid
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
)
SELECT pid
FROM victims
WHERE pg_terminate_backend(pid)

-- name: waiting :value
-- The service's backends currently waiting for a lock.
-- params: admin_name
SELECT count(*)
FROM pg_stat_activity
WHERE
    datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
    AND wait_event_type = 'Lock'
