-- name: table_rows :many
-- Rows each named table holds now, exactly: `datasvc migrate --rollback` says what a rollback that drops
-- them would lose before it runs. count(*) goes through query_to_xml with the table's regclass (quoted by
-- PostgreSQL), so no statement text is assembled outside this file; tables that do not exist are left out.
-- params: tables
-- expect-plan: Function Scan on unnest (one count(*) per table named)
-- retry: safe
SELECT
    c.oid::regclass::text AS table_name,
    (xpath(
        '/row/n/text()',
        query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')
    ))[1]::text::bigint AS row_count
FROM unnest($1::text[]) AS t (name)
INNER JOIN pg_class AS c ON to_regclass(t.name) = c.oid
ORDER BY t.name;

-- name: other_sessions :many
-- Sessions of the service on this database (application_name `datasvc`, or `datasvc:<caller>` for an
-- authenticated caller's request), other than this one: `datasvc migrate --rollback` refuses to take the
-- schema from under them unless --force.
-- params: application_name
-- expect-plan: Function Scan on pg_stat_get_activity
-- retry: safe
SELECT
    pid,
    application_name,
    coalesce(host(client_addr), 'local') AS client,
    state
FROM pg_stat_activity
WHERE
    datname = current_database()
    AND pid <> pg_backend_pid()
    AND (application_name = $1 OR starts_with(application_name, $1 || ':'))
ORDER BY pid;
