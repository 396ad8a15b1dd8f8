-- Remove the rows a create scenario added, so every scenario and target sees exactly :n rows.
-- psql -v n=1000000 -f bench/sql/cleanup.sql   (works on datasvc's schema and on the peer's)
\set ON_ERROR_STOP on
DELETE FROM users WHERE id > :n;
SELECT setval(pg_get_serial_sequence('users', 'id'), :n);
VACUUM (ANALYZE) users;
