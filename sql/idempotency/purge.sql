-- name: purge :value
-- Delete up to `batch` expired keys, oldest first, and say how many: one bounded step of the purge the
-- service runs every minute. SKIP LOCKED: the workers and instances purging at once take different rows
-- rather than queue behind each other. The rows go by the ctids the locking read returned (stable: a row
-- this statement locked cannot be moved by another), so the DELETE fetches each directly (a Tid Scan)
-- rather than joining back on the key, which the planner may do by reading the whole table.
-- params: batch
-- expect-plan: Index Scan using idempotency_keys_expires_at_idx on idempotency_keys (then a Tid Scan)
WITH purged AS (
    DELETE FROM idempotency_keys
    WHERE ctid = any(array(
            SELECT ctid
            FROM idempotency_keys
            WHERE expires_at < now()
            ORDER BY expires_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ))
    RETURNING 1
)

SELECT count(*) FROM purged
