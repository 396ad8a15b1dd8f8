-- Drop users_username_id_idx, which duplicates users_username_key, and say why each remaining index exists.
-- depends: 0005.users-version
-- transactional: false

-- DROP INDEX CONCURRENTLY cannot run in a transaction, so yoyo runs each statement on its own
-- (autocommit). It waits for transactions using the index to finish but blocks neither reads nor writes;
-- lock_timeout bounds the wait for its lock behind a long transaction.
SET lock_timeout = '5s';

-- Every index costs every write: an insert adds an entry to each, and so does every PATCH (updated_at is
-- indexed, so no update of a user is HOT). users had 11; each one left has a statement whose plan needs it.
-- Measured on 300,000 rows from bench/seed.sql plus 74,000 rows inserted since (all `active`, as new users
-- are), PostgreSQL 15, 2 vCPU, load average 10-14 (other test suites running), with
-- EXPLAIN (ANALYZE, BUFFERS, WAL) of the shipped statements, each index dropped in a rolled-back
-- transaction, variants alternating (medians of 20, custom plans). docs/sql.md has the commands.
--
-- users_username_id_idx (username, id), from 0002: username is unique, so (username, id) orders rows
-- exactly as users_username_key does, and every plan that used it uses users_username_key instead
-- (the listing by username adds an Incremental Sort over groups of one row): first page 0.04 -> 0.08 ms,
-- keyset page at 90% 0.05 -> 0.09 ms, offset 10000 38 -> 46 ms, get_by_username and auth.lookup unchanged.
-- Per write it saved 1.1 WAL records and 4 buffers: users.create 0.173 -> 0.140 ms, users.update (PATCH)
-- 0.364 -> 0.275 ms server time (medians of 400 each).
DROP INDEX CONCURRENTLY IF EXISTS users_username_id_idx;

-- The ten that stay, and the statements that use them (the COMMENT is what \di+ shows a DBA).
COMMENT ON INDEX users_pkey IS
'Primary key. get_by_id, update, delete; listing sorted by id; list_search joins its page back through it.';
COMMENT ON INDEX users_username_key IS
'Usernames are unique (409 conflict). get_by_username, auth.lookup by username; listing sorted by username (keyset and offset).';
COMMENT ON INDEX users_email_lower_key IS
'Emails are unique ignoring case (409 conflict). get_by_email, auth.lookup by email: both use lower(email).';
-- Not named by a -- plan: header (each listing statement names its sort key's index), but chosen by the
-- planner for the filters below; measured without it, same conditions as above.
COMMENT ON INDEX users_status_is_verified_idx IS
'Listing filters: exact totals filtered by is_verified and/or status, counted index-only (is_verified=false: 49 against 177 ms on 374k rows); status alone is served by either status index (suspended: 1.4 ms, 393 ms with neither).';
COMMENT ON INDEX users_status_created_at_idx IS
'Listing sorted by created_at (the default) with a status filter: reads only that status''s rows. Without it a first page of suspended users walks back past every recent active user (0.07 against 171 ms after 74k sign-ups); offset 5000: 20 against 64 ms.';
COMMENT ON INDEX users_created_at_id_idx IS
'Keyset and offset order of the listing sorted by created_at (the default), id the tiebreaker.';
COMMENT ON INDEX users_updated_at_id_idx IS
'Keyset and offset order of the listing sorted by updated_at, id the tiebreaker.';
COMMENT ON INDEX users_email_id_idx IS
'Keyset and offset order of the listing sorted by email, id the tiebreaker.';
COMMENT ON INDEX users_full_name_id_idx IS
'Keyset order of the listing sorted by full_name, NULL names last (ascending): the key is ARRAY[full_name].';
COMMENT ON INDEX users_search_trgm_idx IS
'Trigram index for the listing''s search filter: username, email, full_name joined by chr(31) (ILIKE %term%, terms of 3+ characters).';
