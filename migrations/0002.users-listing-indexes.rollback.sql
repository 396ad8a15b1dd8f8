-- Drop the listing indexes (concurrently: writes go on meanwhile). pg_trgm stays: other objects may use it.
-- transactional: false
SET lock_timeout = '5s';

DROP INDEX CONCURRENTLY IF EXISTS users_full_name_trgm_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_email_trgm_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_username_trgm_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_full_name_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_email_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_username_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_updated_at_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_created_at_id_idx;
