-- name: lookup :one
-- Credentials for a login that is a username (exact) or an email (any case or Unicode form, as
-- users.get_by_email); the caller verifies the hash.
-- At most one row matches: usernames cannot contain '@' and emails must.
-- params: login
-- plan: BitmapOr of users_username_key and users_email_caseless_key
-- retry: safe
-- plan-cache: generic
SELECT id, username, email, hashed_password, status, is_verified
FROM users
WHERE username = $1 OR caseless(email) = caseless($1)
