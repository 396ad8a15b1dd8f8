-- name: statements_containing :many
-- The last statement of each client backend of this database whose text holds the given string (a trace
-- id): PostgreSQL's own view of what the service sent.
-- params: needle
SELECT pid, query
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND strpos(query, $1) > 0

-- name: service_statements :many
-- The last statement of each of the service's backends (every client backend but the test's own).
-- params: admin_name
SELECT pid, query
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND application_name <> $1
