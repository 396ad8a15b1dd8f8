-- name: create :one
-- Insert a user and return it as stored (one round trip); status, is_admin and id take their defaults.
-- params: email, username, hashed_password, full_name, bio
-- expect-plan: Insert on users (unique checks via users_username_key, users_email_caseless_key)
INSERT INTO users (email, username, hashed_password, full_name, bio)
VALUES ($1, $2, $3, $4, $5)
RETURNING
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at, version
