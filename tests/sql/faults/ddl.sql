-- name: add_column :exec
-- Add a nullable column: a catalog-only change that invalidates cached plans returning whole rows.
ALTER TABLE users ADD COLUMN nickname text
