-- name: live :value
-- Idempotency keys not expired yet.
SELECT count(*) FROM idempotency_keys WHERE expires_at >= now()
