-- Indexes for GET /api/v1/users: one (sort key, id) btree per sort, trigram GIN indexes for `search`.
-- depends: 0001.create-users
-- transactional: false

-- CREATE INDEX CONCURRENTLY cannot run in a transaction, so yoyo runs each statement on its own
-- (autocommit). CONCURRENTLY takes only a SHARE UPDATE EXCLUSIVE lock: reads and writes go on while each
-- index builds (about 5-30 s each on 1M rows). A failed build leaves an INVALID index behind: the rollback
-- drops it, then apply again. lock_timeout bounds the wait for that lock behind a long transaction.
SET lock_timeout = '5s';

-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Keyset order for each sort key; `id` is the final tiebreaker, so every order is total.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_created_at_id_idx ON users (created_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_updated_at_id_idx ON users (updated_at, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_username_id_idx ON users (username, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_id_idx ON users (email, id);
-- full_name is nullable: the listing orders by (ARRAY[full_name], id). The one-element array is never NULL
-- and sorts a NULL element after every name, so a row comparison can walk past NULL names (sql/users/list.sql).
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_full_name_id_idx ON users ((ARRAY[full_name]), id);

-- search: case-insensitive substring (ILIKE '%term%') of username, email or full_name; a BitmapOr of these.
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_username_trgm_idx ON users USING gin (username gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_full_name_trgm_idx ON users USING gin (full_name gin_trgm_ops);

COMMENT ON INDEX users_full_name_id_idx IS 'Keyset order of the listing sorted by full_name, NULL names last (ascending).';
COMMENT ON INDEX users_username_trgm_idx IS 'Trigram index for the listing''s search filter (ILIKE %term%).';
