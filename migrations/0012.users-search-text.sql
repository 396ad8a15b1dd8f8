-- depends: 0011.users-status-index-comment
-- transactional: false
-- The listing's searched text defined once, as users_search_text(username, email, full_name): caseless()
-- of the three joined by chr(31), the text 0007 indexed. The trigram index, the listing statements
-- (sql/users/list.sql, list_search.sql) and users_estimate (0013) all call it, so changing what a search
-- reads is one CREATE OR REPLACE in a later migration plus a rebuild of the index.
--
-- An SQL function PostgreSQL inlines: IMMUTABLE, a single expression, no SET clause. The planner expands
-- the call in a statement and in the index's definition alike, so `users_search_text(…) LIKE caseless($4)`
-- is matched to the index exactly as the written-out expression was. Its body is SQL-standard (RETURN):
-- parsed when created, its reference to caseless() recorded, so a restore does not depend on search_path.
--
-- Locks: CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY take SHARE UPDATE EXCLUSIVE on users, so
-- reads and writes go on throughout; each waits for the transactions already open on users to end, and
-- the build reads the whole table (on a large table, minutes of I/O and CPU). Until the new index is
-- valid the old one serves searches (to the planner both index the same expression); it is dropped only
-- after. CONCURRENTLY cannot run in a transaction, hence transactional: false. A failed build leaves an
-- INVALID index: roll back, then apply again.
SET lock_timeout = '5s';

CREATE OR REPLACE FUNCTION users_search_text(username text, email text, full_name text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN caseless(username || chr(31) || email || chr(31) || coalesce(full_name, ''));

ALTER FUNCTION users_search_text(text, text, text) OWNER TO datasvc_owner;

CREATE INDEX CONCURRENTLY IF NOT EXISTS users_search_text_trgm_idx ON users USING gin (
    users_search_text(username, email, full_name) gin_trgm_ops
);

DROP INDEX CONCURRENTLY IF EXISTS users_search_caseless_trgm_idx;

COMMENT ON FUNCTION users_search_text(text, text, text) IS
'What the listing''s search reads: caseless() of username, email and full_name joined by chr(31) (a search term holds no control character, so it cannot match across two fields). Inlined by the planner.';
COMMENT ON INDEX users_search_text_trgm_idx IS
'Trigram index for the listing''s search filter: users_search_text() LIKE caseless(pattern), terms of 3+ characters.';
