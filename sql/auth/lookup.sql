-- name: lookup :one
-- Credentials for a login that is a username (exact) or an email (any case or Unicode form, as
-- users.get_by_email); the caller verifies the hash.
-- At most one row matches: usernames cannot contain '@' and emails must. So one branch runs, chosen by
-- the login itself: the other's One-Time Filter is false and its index is never touched. One index
-- probe per lookup, where `username = $1 OR caseless(email) = caseless($1)` would probe both indexes
-- (BitmapOr) on every call (docs/benchmarks.md).
-- params: login
-- expect-plan: Index Scan using users_username_key or users_email_caseless_key
-- retry: safe
-- expect-plan-cache: generic
SELECT id, username, email, hashed_password, status, is_verified
FROM users
WHERE username = $1 AND strpos($1, '@') = 0
UNION ALL
SELECT id, username, email, hashed_password, status, is_verified
FROM users
WHERE caseless(email) = caseless($1) AND strpos($1, '@') > 0
