-- name: lock_user :value
-- Hold one user's row lock until the caller's transaction ends (run inside a transaction).
-- params: id
SELECT id FROM users WHERE id = $1 FOR UPDATE

-- name: lock_users_for_writes :exec
-- Block every insert, update and delete of users (reads go on) until the caller's transaction ends.
LOCK TABLE users IN SHARE MODE

-- name: touch_user :exec
-- Update one user's bio: used by two transactions that take row locks in opposite orders.
-- params: id, bio
UPDATE users SET bio = $2 WHERE id = $1

-- name: bio_sum :value
-- Read every bio length in a SERIALIZABLE transaction: the read half of a write-skew pair.
SELECT coalesce(sum(char_length(bio)), 0) FROM users

-- name: row_counts :one
-- How many rows a writer left, and how many are duplicated or damaged (bio not derived from username).
SELECT
    count(*) AS total,
    count(*) - count(DISTINCT full_name) AS duplicated,
    count(*) FILTER (WHERE bio IS DISTINCT FROM repeat(username, 8)) AS damaged
FROM users

-- name: usernames :many
-- Every username present.
SELECT username FROM users
