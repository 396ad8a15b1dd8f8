-- name: applied_migrations :many
-- Migration ids yoyo has recorded as applied, to compare with the files in migrations/.
-- expect-plan: Seq Scan on _yoyo_migration (a handful of rows)
-- retry: safe
SELECT migration_id
FROM _yoyo_migration
ORDER BY migration_id
