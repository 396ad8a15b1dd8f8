-- name: delete :value
-- Delete one user; returns its id, or NULL when there was no such user.
-- params: id
-- plan: Index Scan using users_pkey on users
DELETE FROM users
WHERE id = $1
RETURNING id
