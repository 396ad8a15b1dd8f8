-- An index over the counts table of 0009, so a total reads its live rows, not every page the table grew to;
-- and users_estimate (0009) estimating the listing's search as 0007 now writes it.
-- depends: 0007.email-caseless 0009.users-counts
-- transactional: false
--
-- Why: users_counts is written by every create, delete and status change (delta rows) and folded now and
-- then; the rows a fold deletes leave dead space behind until autovacuum (at most once a minute), and
-- the table keeps those pages afterwards, refilled in any order. A total summed by a sequential scan reads
-- all of them: measured on the benchmark's database after a few minutes of writes, 557 pages for 9 live
-- rows, ~300 us of CPU per listing instead of ~50. Through this index the sum is an Index Only Scan of
-- the live entries (B-tree scans mark dead entries as such and skip them afterwards), whatever the
-- table's size. INCLUDE (n): the sum needs no heap visit for an all-visible page.
-- Cost on writes: one more index entry per delta row (one per write statement, two per status change).

-- CONCURRENTLY (so yoyo runs it outside a transaction): writers of users, whose triggers write
-- users_counts, never wait on the build. A failed build leaves an INVALID index: roll back, apply again.
SET lock_timeout = '5s';

CREATE INDEX CONCURRENTLY IF NOT EXISTS users_counts_combination_idx
ON users_counts (status, is_verified, is_admin) INCLUDE (n);

COMMENT ON INDEX users_counts_combination_idx IS 'The listing''s total (sql/users/list.sql) sums n through it: the live rows only, however many pages users_counts spans.';

-- 0007 made the listing's search `caseless(username || chr(31) || email || chr(31) || coalesce(full_name, ''))
-- LIKE caseless($4)` (the expression of users_search_caseless_trgm_idx); the estimate must plan that very
-- predicate, or it reads statistics of an expression nothing uses. Same function otherwise (see 0009).
CREATE OR REPLACE FUNCTION users_estimate(status text, is_verified boolean, is_admin boolean, search text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = public, pg_temp AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE $sql$
        EXPLAIN (FORMAT JSON)
        SELECT FROM users
        WHERE ($1::text IS NULL OR status = $1)
            AND ($2::boolean IS NULL OR is_verified = $2)
            AND ($3::boolean IS NULL OR is_admin = $3)
            AND (
                $4::text IS NULL
                OR caseless(username || chr(31) || email || chr(31) || coalesce(full_name, '')) LIKE caseless($4)
            )
    $sql$ INTO plan USING status, is_verified, is_admin, search;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END;
$$;
