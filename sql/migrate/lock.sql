-- name: try_lock :value
-- Take the session-level advisory lock that serializes every `datasvc migrate` run; true when taken.
-- It is released when the session ends, so a migrator killed with -9 cannot leave it behind.
-- expect-plan: Result (no table access)
SELECT pg_try_advisory_lock(hashtextextended('datasvc.migrate', 0));

-- name: unlock :value
-- Release the migration advisory lock taken by migrate.try_lock in this session.
-- expect-plan: Result (no table access)
SELECT pg_advisory_unlock(hashtextextended('datasvc.migrate', 0));

-- name: break_yoyo_lock :many
-- Remove yoyo's lock row, which has no expiry; run only while holding the advisory lock, which
-- proves no other migrator is running, so any row left is from a crashed one.
-- expect-plan: Seq Scan on yoyo_lock (at most one row)
DELETE FROM yoyo_lock
RETURNING pid;
