-- name: count :value
-- Backends of this database opened under one application_name (the service's pool).
-- params: application_name
SELECT count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1

-- name: busy :many
-- Backends of one application_name that are not idle: running, waiting on a lock, or in a transaction.
-- params: application_name
SELECT pid, state, wait_event_type, left(query, 80) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND state <> 'idle'

-- name: terminate :many
-- Kill the backends of one application_name (what an operator or a failover does); returns their pids.
-- params: application_name
SELECT pid
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND pg_terminate_backend(pid)

-- name: waiting :value
-- Backends of one application_name currently waiting for a lock.
-- params: application_name
SELECT count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND wait_event_type = 'Lock'
