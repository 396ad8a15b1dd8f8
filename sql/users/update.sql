-- name: update :one
-- Apply a partial update and return the row as stored; NULL when no such user.
-- The patch is a jsonb object: a key that is present is set (JSON null clears a nullable column),
-- a key that is absent keeps the column as it is. The trigger bumps updated_at.
-- params: id, patch
-- plan: Index Scan using users_pkey on users
UPDATE users
SET
    email = CASE WHEN $2::jsonb ? 'email' THEN $2::jsonb ->> 'email' ELSE email END,
    full_name = CASE WHEN $2::jsonb ? 'full_name' THEN $2::jsonb ->> 'full_name' ELSE full_name END,
    bio = CASE WHEN $2::jsonb ? 'bio' THEN $2::jsonb ->> 'bio' ELSE bio END,
    status = CASE WHEN $2::jsonb ? 'status' THEN $2::jsonb ->> 'status' ELSE status END,
    is_verified = CASE
        WHEN $2::jsonb ? 'is_verified' THEN ($2::jsonb ->> 'is_verified')::boolean ELSE is_verified
    END,
    is_admin = CASE
        WHEN $2::jsonb ? 'is_admin' THEN ($2::jsonb ->> 'is_admin')::boolean ELSE is_admin
    END
WHERE id = $1
RETURNING
    id, email, username, full_name, bio, status,
    is_verified, is_admin, created_at, updated_at
