-- Exact totals for the listing's filters (status, is_verified, is_admin) without counting users: a
-- counts table kept by triggers in the same transaction as every write, and the planner's row estimate
-- for a filter with a search term.
-- depends: 0008.runtime-role-settings
--
-- Why: `GET /api/v1/users?count=exact` counted every matching row per request (~85 ms of CPU on 1M rows;
-- 32 such requests saturate two cores). The filters have 3 x 2 x 2 = 12 combinations, so the totals fit
-- in a table of 12 numbers, if the database keeps it exact itself.
--
-- How it stays exact: every write to users adds *delta rows* (status, is_verified, is_admin, +n or -n)
-- to users_counts from a trigger, in the writing transaction. A snapshot sees a write's delta rows if and
-- only if it sees the write, so sum(n) over a combination equals count(*) of those users in every
-- snapshot, at every isolation level, and a rolled-back write takes its deltas with it.
--
-- Why delta rows and not one counter per combination: `UPDATE counts SET n = n + 1` makes every writer
-- with the same combination (nearly every create: active, unverified, not admin) wait for the previous
-- one to commit: one hot row serialises all creates. An INSERT takes no row lock: writers never wait on
-- each other and cannot deadlock here.
--
-- Compaction: deltas pile up (one or two per write), so users_counts_compact() folds them into one row
-- per combination: DELETE every row its snapshot sees and INSERT their sums, in one statement. A snapshot
-- sees all of the fold or none of it, and the sums it inserts equal the rows it deleted; deltas committed
-- meanwhile are not seen by the DELETE and stay. An advisory lock keeps two folds from running at once.
-- Who folds: the writes themselves, now and then. The write transaction whose id is a multiple of 256
-- folds once, inside its own transaction (if it rolls back, so does the fold: still exact), so the table
-- holds a few hundred rows whoever writes (the service, psql, a bulk load), with no timer to run. That
-- write pays ~0.5 ms once; the others pay nothing. Only at READ COMMITTED: a REPEATABLE READ writer's
-- DELETE could meet a fold committed after its snapshot and fail with a serialization error.
-- Dead rows left by folds are vacuumed early (the table's autovacuum thresholds below).
--
-- Cost on writes: INSERT and DELETE triggers are per statement (one delta row per combination, however
-- many rows the statement wrote: a bulk load adds 12 rows); the UPDATE trigger is per row, and fires only
-- when status, is_verified or is_admin actually changes (its WHEN clause): a PATCH of full_name or bio
-- queues nothing. (PostgreSQL does not allow transition tables together with a column list.)
--
-- Privileges: datasvc_app may read users_counts, nothing else. The trigger functions and the fold are
-- SECURITY DEFINER, owned by datasvc_owner, with a fixed
-- search_path: the service cannot write a delta of its own, and nothing it creates can stand in for
-- users_counts.
--
-- Locks: creating the triggers takes SHARE ROW EXCLUSIVE on users (writes wait, reads do not) until this
-- migration commits, after the backfill's count of every row (~0.2 s per million rows). Taken first,
-- explicitly, so the backfill counts exactly the rows that existed before the triggers.

SET lock_timeout = '5s';
LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE users_counts (
    status text NOT NULL,
    is_verified boolean NOT NULL,
    is_admin boolean NOT NULL,
    n bigint NOT NULL
) WITH (
    -- Compaction leaves dead rows behind; vacuum the (small) table as soon as there are some.
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0
);
ALTER TABLE users_counts OWNER TO datasvc_owner;

-- Called by each trigger after writing its deltas: one write transaction in 256 folds, once.
CREATE FUNCTION users_counts_fold_now_and_then() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF pg_current_xact_id()::text::bigint % 256 = 0
        AND current_setting('transaction_isolation') = 'read committed'
        AND current_setting('datasvc.users_counts_folded', true) IS DISTINCT FROM 'on'
    THEN
        PERFORM set_config('datasvc.users_counts_folded', 'on', true);  -- true: for this transaction
        PERFORM users_counts_compact();
    END IF;
END;
$$;

-- The users a statement inserted, as one delta row per combination.
CREATE FUNCTION users_counts_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_counts (status, is_verified, is_admin, n)
    SELECT status, is_verified, is_admin, count(*) FROM inserted GROUP BY status, is_verified, is_admin;
    PERFORM users_counts_fold_now_and_then();
    RETURN NULL;
END;
$$;

-- The users a statement deleted, likewise, negative.
CREATE FUNCTION users_counts_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_counts (status, is_verified, is_admin, n)
    SELECT status, is_verified, is_admin, -count(*) FROM deleted GROUP BY status, is_verified, is_admin;
    PERFORM users_counts_fold_now_and_then();
    RETURN NULL;
END;
$$;

-- One user moved from one combination to another.
CREATE FUNCTION users_counts_moved() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_counts (status, is_verified, is_admin, n)
    VALUES (OLD.status, OLD.is_verified, OLD.is_admin, -1), (NEW.status, NEW.is_verified, NEW.is_admin, 1);
    PERFORM users_counts_fold_now_and_then();
    RETURN NULL;
END;
$$;

-- TRUNCATE users (bench/seed.sql does) empties the counts too.
CREATE FUNCTION users_counts_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM users_counts;
    RETURN NULL;
END;
$$;

-- Fold the deltas into one row per combination; the number of rows folded (0: another fold is running).
CREATE FUNCTION users_counts_compact() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    folded bigint;
BEGIN
    -- Another fold is running: it folds what this one would.
    IF NOT pg_try_advisory_xact_lock('users_counts'::regclass::oid::int, 0) THEN
        RETURN 0;
    END IF;
    WITH gone AS (
        DELETE FROM users_counts RETURNING status, is_verified, is_admin, n
    ), kept AS (
        INSERT INTO users_counts (status, is_verified, is_admin, n)
        SELECT status, is_verified, is_admin, sum(n) FROM gone
        GROUP BY status, is_verified, is_admin
        HAVING sum(n) <> 0
    )
    SELECT count(*) INTO folded FROM gone;
    RETURN folded;
END;
$$;

CREATE TRIGGER users_counts_inserted AFTER INSERT ON users
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION users_counts_inserted();

CREATE TRIGGER users_counts_deleted AFTER DELETE ON users
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION users_counts_deleted();

CREATE TRIGGER users_counts_moved AFTER UPDATE OF status, is_verified, is_admin ON users
FOR EACH ROW
WHEN (
    (old.status, old.is_verified, old.is_admin) IS DISTINCT FROM (new.status, new.is_verified, new.is_admin)
)
EXECUTE FUNCTION users_counts_moved();

CREATE TRIGGER users_counts_truncated AFTER TRUNCATE ON users
FOR EACH STATEMENT EXECUTE FUNCTION users_counts_truncated();

-- The rows that exist now (the lock above keeps every writer out until commit).
INSERT INTO users_counts (status, is_verified, is_admin, n)
SELECT status, is_verified, is_admin, count(*) AS n
FROM users
GROUP BY status, is_verified, is_admin;

-- The planner's estimate of how many users a listing filter matches, search term included: what
-- `count=estimated` answers when the filtered set is too large to count (sql/users/list.sql). EXPLAIN
-- plans the same WHERE clause as the listing with the caller's values as parameters (never formatted into
-- the text), so it uses the statistics ANALYZE gathered (the trigram index's expression included) or,
-- on a table never analyzed, the planner's guess from the table's size. Planning only: no row is read.
-- Runs with the caller's rights (SELECT on users). VOLATILE because PostgreSQL allows EXPLAIN only
-- there; PARALLEL RESTRICTED: the listing may still run parallel plans around it.
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
            AND ($4::text IS NULL OR (username || chr(31) || email || chr(31) || coalesce(full_name, '')) ILIKE $4)
    $sql$ INTO plan USING status, is_verified, is_admin, search;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::numeric::bigint;
END;
$$;
ALTER FUNCTION users_estimate(text, boolean, boolean, text) OWNER TO datasvc_owner;

ALTER FUNCTION users_counts_inserted() OWNER TO datasvc_owner;
ALTER FUNCTION users_counts_deleted() OWNER TO datasvc_owner;
ALTER FUNCTION users_counts_moved() OWNER TO datasvc_owner;
ALTER FUNCTION users_counts_truncated() OWNER TO datasvc_owner;
ALTER FUNCTION users_counts_compact() OWNER TO datasvc_owner;
ALTER FUNCTION users_counts_fold_now_and_then() OWNER TO datasvc_owner;
-- Triggers call their functions whatever EXECUTE says; nobody else needs to.
REVOKE ALL ON FUNCTION users_counts_inserted() FROM public;
REVOKE ALL ON FUNCTION users_counts_deleted() FROM public;
REVOKE ALL ON FUNCTION users_counts_moved() FROM public;
REVOKE ALL ON FUNCTION users_counts_truncated() FROM public;
REVOKE ALL ON FUNCTION users_counts_compact() FROM public;
REVOKE ALL ON FUNCTION users_counts_fold_now_and_then() FROM public;
GRANT SELECT ON users_counts TO datasvc_app;

COMMENT ON TABLE users_counts IS 'How many users have each (status, is_verified, is_admin): sum(n) per combination, exact in every snapshot. Delta rows written by the users_counts_* triggers, folded by users_counts_compact() now and then. Migration 0009 explains why.';
COMMENT ON COLUMN users_counts.n IS 'Users added (positive) or removed (negative) with this combination by one statement or fold.';
COMMENT ON FUNCTION users_counts_compact() IS 'Folds users_counts into one row per combination; returns the rows folded (0: another fold was running). Called by one write transaction in 256; an operator may call it any time.';
COMMENT ON FUNCTION users_estimate(text, boolean, boolean, text) IS 'The planner''s row estimate for the listing''s filters (NULL: no filter; search: an ILIKE pattern). Plans, never runs.';
