-- Back to 0001's lower(email) uniqueness and 0004's search index (built concurrently, with 0006's
-- comments), then drop the caseless() indexes and the function. Addresses stay in NFC: the old rule reads
-- them as well as any other spelling. Building users_email_lower_key fails, and the rollback stops with
-- no row lost, if two addresses are equal under this database's lower() but not under caseless() (e.g.
-- 'İ' and 'i' on a C.UTF-8 cluster).
-- transactional: false
SET lock_timeout = '5s';

CREATE INDEX CONCURRENTLY IF NOT EXISTS users_search_trgm_idx ON users USING gin (
    (username || chr(31) || email || chr(31) || coalesce(full_name, '')) gin_trgm_ops
);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_lower_key ON users (lower(email));
DROP INDEX CONCURRENTLY IF EXISTS users_search_caseless_trgm_idx;
DROP INDEX CONCURRENTLY IF EXISTS users_email_caseless_key;
DROP FUNCTION IF EXISTS caseless(text);

COMMENT ON INDEX users_email_lower_key IS
'Emails are unique ignoring case (409 conflict). get_by_email, auth.lookup by email: both use lower(email).';
COMMENT ON INDEX users_search_trgm_idx IS
'Trigram index for the listing''s search filter: username, email, full_name joined by chr(31) (ILIKE %term%, terms of 3+ characters).';
COMMENT ON COLUMN users.email IS 'Contact address; unique case-insensitively (users_email_lower_key).';
