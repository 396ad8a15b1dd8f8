-- Remove the rows a create scenario added, so every scenario and target sees exactly :n rows.
-- psql -v n=1000000 -f bench/sql/cleanup.sql   (works on datasvc's schema and on the peer's)
\set ON_ERROR_STOP on
DELETE FROM users WHERE id > :n;
SELECT setval(pg_get_serial_sequence('users', 'id'), :n);
VACUUM (ANALYZE) users;
-- datasvc's counts table (migration 0009) leaves a dead row behind each delta its folds delete: vacuumed
-- here too, or on a server without autovacuum every window's creates fold over the dead rows of the last.
SELECT to_regclass('users_counts') IS NOT NULL AS has_counts \gset
\if :has_counts
VACUUM (ANALYZE) users_counts;
\endif
-- The keys create_idempotent recorded (migration 0014), so each window starts with none.
SELECT to_regclass('idempotency_keys') IS NOT NULL AS has_keys \gset
\if :has_keys
DELETE FROM idempotency_keys;
VACUUM (ANALYZE) idempotency_keys;
\endif
-- Write out what the create left dirty now, not during the next window: a checkpoint (timed every 5 min
-- by default) that lands in a window slows that target's writes (full-page images) and not its neighbour's.
-- It also restarts the checkpoint timer, so none falls due during the next few windows.
CHECKPOINT;
