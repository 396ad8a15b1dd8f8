-- Say why users_status_is_verified_idx stays now that 0009 keeps the listing's filter-only totals in
-- users_counts: 0006's comment gave the exact counts it no longer serves.
-- depends: 0006.users-index-review 0009.users-counts

-- COMMENT takes a brief lock on the index; never queue requests behind a long transaction for it.
SET lock_timeout = '5s';

-- Measured after 0009 on 374,000 users (300,000 from bench/seed.sql plus 74,000 active sign-ups), custom
-- plans of every listing statement with each filter combination, with the index and without it (dropped
-- in a rolled-back transaction): 252 of 939 plans use it, those filtered by status and is_admin=true and
-- those filtered by status with a search term (ANDed with the trigram index's bitmap). Together they took
-- 8.3 s with it against 11.1 s without; the largest gain is full_name desc, inactive admins (48 against
-- 385 ms), while a few are faster without it (created_at asc, inactive admins: 93 against 33 ms).
-- Load average 15-20 on 2 vCPU (other suites running), PostgreSQL 15.
COMMENT ON INDEX users_status_is_verified_idx IS
'Listing pages filtered by status with is_admin=true or a search term: a bitmap of those rows instead of walking the sort key''s index past the others (full_name desc, inactive admins: 48 against 385 ms on 374k rows). Filter-only totals come from users_counts (0009).';
