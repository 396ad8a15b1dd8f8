-- Remove the rows a create scenario added, so every scenario and target sees exactly :n rows.
-- psql -v n=1000000 -f bench/sql/cleanup.sql   (works on datasvc's schema and on the peer's)
\set ON_ERROR_STOP on
DELETE FROM users WHERE id > :n;
SELECT setval(pg_get_serial_sequence('users', 'id'), :n);
VACUUM (ANALYZE) users;
-- Write out what the create left dirty now, not during the next window: a checkpoint (timed every 5 min
-- by default) that lands in a window slows that target's writes (full-page images) and not its neighbour's.
-- It also restarts the checkpoint timer, so none falls due during the next few windows.
CHECKPOINT;
