-- Back to 0002's per-column trigram indexes (built concurrently), then drop the combined one.
-- transactional: false
SET lock_timeout = '5s';

CREATE INDEX CONCURRENTLY IF NOT EXISTS users_username_trgm_idx ON users USING gin (username gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_full_name_trgm_idx ON users USING gin (full_name gin_trgm_ops);
DROP INDEX CONCURRENTLY IF EXISTS users_search_trgm_idx;
