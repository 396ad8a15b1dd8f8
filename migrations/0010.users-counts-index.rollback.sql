-- Totals are summed by a sequential scan of users_counts again (concurrently: writes go on meanwhile).
-- transactional: false
SET lock_timeout = '5s';

DROP INDEX CONCURRENTLY IF EXISTS users_counts_combination_idx;
