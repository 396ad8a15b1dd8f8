-- depends: 0012.users-search-text
-- users_estimate plans the listing's filter as the listing now writes it, with users_search_text(); and
-- two index comments say why each index stays without carrying the figures that showed it (those are in
-- docs/sql.md with their commands).
--
-- One definition of users_estimate at a time, and no third copy for the rollback: the definition 0010
-- made is kept under another name, users_estimate_before_0013, which nothing calls; the rollback drops
-- this one and renames that one back. A later migration that changes the estimate does the same with
-- its own name.
--
-- Locks: ALTER/CREATE FUNCTION and COMMENT take brief catalog locks; a listing already running keeps the
-- definition it started with. lock_timeout keeps DDL from queueing requests behind a long transaction.
SET lock_timeout = '5s';

-- Callers never miss it: the new users_estimate is created in the same transaction, before it commits.
-- squawk-ignore renaming-object
ALTER FUNCTION users_estimate(text, boolean, boolean, text) RENAME TO users_estimate_before_0013;

-- The planner's estimate of how many users a listing filter matches: EXPLAIN of the listing's WHERE
-- clause with the caller's values as parameters (never formatted into the text), so it uses the statistics
-- ANALYZE gathered, the trigram index's expression included. Planning only: no row is read. VOLATILE
-- because PostgreSQL allows EXPLAIN only there; PARALLEL RESTRICTED: the listing may still run parallel
-- plans around it. Runs with the caller's rights (SELECT on users).
CREATE FUNCTION users_estimate(status text, is_verified boolean, is_admin boolean, search text)
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
            AND ($4::text IS NULL OR users_search_text(username, email, full_name) LIKE caseless($4))
    $sql$ INTO plan USING status, is_verified, is_admin, search;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END;
$$;

ALTER FUNCTION users_estimate(text, boolean, boolean, text) OWNER TO datasvc_owner;

COMMENT ON FUNCTION users_estimate(text, boolean, boolean, text) IS
'The planner''s row estimate for the listing''s filters (NULL: no filter; search: a LIKE pattern over users_search_text()). Plans, never runs.';
COMMENT ON INDEX users_status_created_at_idx IS
'Listing sorted by created_at (the default) with a status filter: reads only that status''s rows, where the created_at index alone would walk back past every recent user of the other statuses.';
COMMENT ON INDEX users_status_is_verified_idx IS
'Listing pages filtered by status with is_admin=true or a search term: a bitmap of those rows instead of walking the sort key''s index past the others. Filter-only totals come from users_counts (0009).';
