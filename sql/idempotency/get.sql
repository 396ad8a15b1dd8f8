-- name: get :one
-- The recorded answer of a key, read after a keyed write failed on a unique constraint: a concurrent
-- request with the same key committed first (or took the same username or email), and its record answers.
-- params: scope, key
-- expect-plan: Index Scan using idempotency_keys_pkey on idempotency_keys
SELECT status, answer, fingerprint
FROM idempotency_keys
WHERE scope = $1 AND request_key = $2
