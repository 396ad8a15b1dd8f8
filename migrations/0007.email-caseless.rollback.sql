-- Back to 0001's lower(email) uniqueness and 0004's search, whose indexes 0007 left in place: drop the
-- caseless() indexes (concurrently: writes go on meanwhile) and the function. Addresses stay in NFC:
-- the old rule reads them as well as any other spelling.
-- transactional: false
SET lock_timeout = '5s';

DROP INDEX CONCURRENTLY IF EXISTS users_search_caseless_trgm_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_email_caseless_key;
DROP FUNCTION IF EXISTS caseless(text);

COMMENT ON COLUMN users.email IS 'Contact address; unique case-insensitively (users_email_lower_key).';
COMMENT ON INDEX users_email_lower_key IS NULL;
COMMENT ON INDEX users_search_trgm_idx IS 'Trigram index for the listing''s search filter: username, email, full_name joined by chr(31).';
