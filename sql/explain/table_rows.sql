-- name: table_rows :many
-- How many rows the planner believes each named table holds (pg_class.reltuples, as of its last ANALYZE
-- or VACUUM; for a table never analyzed, the live rows the statistics system counted), and its pages:
-- `datasvc sql explain` prints them beside a plan, because a tiny table is scanned rather than indexed.
-- params: tables
-- expect-plan: Nested Loop Left Join (catalog lookups by name and oid)
-- retry: safe
SELECT
    c.relname AS table_name,
    c.relpages AS pages,
    CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END AS row_estimate
FROM unnest($1::text[]) AS t (name)
INNER JOIN pg_class AS c ON to_regclass(t.name) = c.oid
LEFT JOIN pg_stat_user_tables AS s ON c.oid = s.relid
ORDER BY c.relname
