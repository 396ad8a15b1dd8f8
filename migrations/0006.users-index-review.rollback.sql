-- Re-create users_username_id_idx (concurrently: writes go on meanwhile) and put back the index comments
-- 0002 and 0004 left (the others had none).
-- transactional: false
SET lock_timeout = '5s';

CREATE INDEX CONCURRENTLY IF NOT EXISTS users_username_id_idx ON users (username, id);

COMMENT ON INDEX users_pkey IS NULL;
COMMENT ON INDEX users_username_key IS NULL;
COMMENT ON INDEX users_email_lower_key IS NULL;
COMMENT ON INDEX users_status_is_verified_idx IS NULL;
COMMENT ON INDEX users_status_created_at_idx IS NULL;
COMMENT ON INDEX users_created_at_id_idx IS NULL;
COMMENT ON INDEX users_updated_at_id_idx IS NULL;
COMMENT ON INDEX users_email_id_idx IS NULL;
COMMENT ON INDEX users_full_name_id_idx IS 'Keyset order of the listing sorted by full_name, NULL names last (ascending).';
COMMENT ON INDEX users_search_trgm_idx IS 'Trigram index for the listing''s search filter: username, email, full_name joined by chr(31).';
