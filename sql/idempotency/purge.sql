-- name: purge :value
-- Delete up to `batch` expired keys, oldest first, and say how many: one bounded step of the purge the
-- service runs every minute. SKIP LOCKED: the workers and instances purging at once take different rows
-- rather than queue behind each other.
-- params: batch
-- expect-plan: Index Scan using idempotency_keys_expires_at_idx on idempotency_keys
WITH doomed AS (
    SELECT scope, request_key
    FROM idempotency_keys
    WHERE expires_at < now()
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),

purged AS (
    DELETE FROM idempotency_keys AS k
    USING doomed
    WHERE k.scope = doomed.scope AND k.request_key = doomed.request_key
    RETURNING 1
)

SELECT count(*) FROM purged
