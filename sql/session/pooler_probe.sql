-- name: pooler_probe :one
-- Who answers this session: the server process's id (a pooler announces a made-up one at connect), and
-- whether a statement prepared under the name given is visible under that name (a pooler that supports
-- prepared statements, PgBouncer >= 1.21, renames them; an older one passes names through, and asyncpg's
-- names then collide between clients). Run inside a transaction, right after preparing it.
-- params: name
-- expect-plan: Function Scan on pg_prepared_statement
-- retry: safe
SELECT
    pg_backend_pid() AS backend_pid,
    $1 IN (SELECT p.name FROM pg_prepared_statements AS p) AS name_visible
