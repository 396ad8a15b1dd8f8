-- name: create_file_table :exec
-- Bookkeeping of datasvc, not of the schema: the content hash of each migration file when applied,
-- to report drift. Owned by `datasvc migrate` (like yoyo's own tables), so it survives a full rollback.
-- expect-plan: Utility statement
CREATE TABLE IF NOT EXISTS datasvc_migration_file (
    migration_id text PRIMARY KEY,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: file_hashes :many
-- The content hash recorded for each applied migration.
-- expect-plan: Seq Scan on datasvc_migration_file (one row per migration)
-- retry: safe
SELECT migration_id, sha256
FROM datasvc_migration_file
ORDER BY migration_id;

-- name: record_files :exec
-- Record (or re-record) the content hash of migrations just applied; ids and hashes are parallel arrays.
-- params: migration_ids, hashes
-- expect-plan: Insert on datasvc_migration_file (conflict on its primary key)
INSERT INTO datasvc_migration_file (migration_id, sha256)
SELECT f.migration_id, f.sha256
FROM unnest($1::text[], $2::text[]) AS f (migration_id, sha256)
ON CONFLICT (migration_id) DO UPDATE
    SET sha256 = excluded.sha256, applied_at = now();

-- name: forget_files :exec
-- Drop the recorded hashes of migrations just rolled back.
-- params: migration_ids
-- expect-plan: Seq Scan on datasvc_migration_file (one row per migration)
DELETE FROM datasvc_migration_file
WHERE migration_id = any($1::text[]);
