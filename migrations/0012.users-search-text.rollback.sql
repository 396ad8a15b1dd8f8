-- transactional: false
-- The trigram index goes back to the expression 0007 wrote out (built before the function's index is
-- dropped, both concurrently: reads and writes go on), then the function goes.
SET lock_timeout = '5s';

CREATE INDEX CONCURRENTLY IF NOT EXISTS users_search_caseless_trgm_idx ON users USING gin (
    caseless(username || chr(31) || email || chr(31) || coalesce(full_name, '')) gin_trgm_ops
);

DROP INDEX CONCURRENTLY IF EXISTS users_search_text_trgm_idx;

DROP FUNCTION IF EXISTS users_search_text(text, text, text);

COMMENT ON INDEX users_search_caseless_trgm_idx IS
'Trigram index for the listing''s search filter: caseless() of username, email, full_name joined by chr(31) (LIKE %term%, terms of 3+ characters).';
