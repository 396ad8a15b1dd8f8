-- Totals are summed by a sequential scan of users_counts again (concurrently: writes go on meanwhile), and
-- users_estimate plans 0009's ILIKE predicate again.
-- transactional: false
SET lock_timeout = '5s';

DROP INDEX CONCURRENTLY IF EXISTS users_counts_combination_idx;

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
            AND ($4::text IS NULL OR (username || chr(31) || email || chr(31) || coalesce(full_name, '')) ILIKE $4)
    $sql$ INTO plan USING status, is_verified, is_admin, search;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END;
$$;
