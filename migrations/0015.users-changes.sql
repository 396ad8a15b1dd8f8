-- depends: 0013.users-estimate-search-text
-- The audit trail of users: one row per created, updated or deleted user, written by triggers in the
-- writing transaction, so a change made with psql is recorded as one made by the service; the change
-- feed (GET /api/v1/users/changes) reads it.
--
-- What a row says: the operation, the user, the version the write left (a delete: one past the last
-- version, so per user the versions of the trail only grow), the writing transaction's id (xid), when
-- (statement_timestamp()), who (application_name, which names the caller, `datasvc:<caller>`, while a
-- connection serves it; and the database role), and for an update the columns that changed, old and new
-- value. hashed_password never appears: its change is recorded as the key alone, `{"hashed_password":
-- {}}`. Columns a write left as they were are not recorded (a PATCH sends every settable column).
--
-- Why the transaction id: commit order is what a reader of changes needs, and it is not known inside
-- the transaction. A reader that hands out only rows whose xid is below the xmin of its snapshot (every
-- transaction below it has ended: committed, so visible, or rolled back, so gone) never hands out a row
-- before one that could still appear below it: a cursor of (xid, seq) never skips a late commit.
-- seq orders the rows of one transaction; its sequence is cached per session, which is enough for that.
--
-- Cost on writes: one INSERT per changed user. Inserts and deletes are recorded per statement from the
-- transition tables the counts triggers (0009) already collect; updates per row, comparing the eight
-- data columns as plain expressions (no JSON diff of whole rows). No NOTIFY here: a transaction that
-- notifies holds a cluster-wide lock from before its commit record until it is flushed, so concurrent
-- writers would commit one fsync at a time (8 writers: 5x fewer commits/s). The service wakes its
-- long polls itself (datasvc/listener.py). Measured in docs/benchmarks.md.
--
-- Retention: users_changes_purge(retention, batch) deletes the trail from its start, at most `batch`
-- rows at a time, while they are older than `retention`, and records in users_changes_horizon how far
-- it went, so a reader can tell a cursor whose next rows were purged (410 cursor-expired) from an idle one.
--
-- Privileges: the trigger functions and the purge are SECURITY DEFINER, owned by datasvc_owner: the
-- service (datasvc_app) may read the trail and run the purge, never write a row of its own.
--
-- Locks: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on users (writes wait, reads do not), briefly.

SET lock_timeout = '5s';

CREATE TABLE users_changes (
    xid xid8 NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY (CACHE 100),
    op text NOT NULL,
    user_id bigint NOT NULL,
    version_after bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    caller text NOT NULL,
    db_user text NOT NULL,
    changed jsonb,
    CONSTRAINT users_changes_pkey PRIMARY KEY (xid, seq)
);
ALTER TABLE users_changes OWNER TO datasvc_owner;

-- Who changed user 42: the trail of one user without reading everyone's.
CREATE INDEX users_changes_user_id_idx ON users_changes (user_id);

-- How far the purge went: the last (xid, seq) it deleted. One row, always.
CREATE TABLE users_changes_horizon (
    xid xid8 NOT NULL,
    seq bigint NOT NULL
);
ALTER TABLE users_changes_horizon OWNER TO datasvc_owner;
INSERT INTO users_changes_horizon (xid, seq) VALUES ('0', 0);

-- The role a session acts as: current_user outside this SECURITY DEFINER function (where current_user
-- is its owner): SET ROLE's role, else the login.
CREATE FUNCTION users_changes_acting_role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('role'), 'none'), session_user::text)
$$;

-- The users a statement inserted, one row each, in id order.
CREATE FUNCTION users_changes_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user)
    SELECT pg_current_xact_id(), 'create', i.id, i.version, statement_timestamp(),
        current_setting('application_name'), users_changes_acting_role()
    FROM inserted AS i
    ORDER BY i.id;
    RETURN NULL;
END;
$$;

-- The users a statement deleted; the version is one past the last they had.
CREATE FUNCTION users_changes_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user)
    SELECT pg_current_xact_id(), 'delete', d.id, d.version + 1, statement_timestamp(),
        current_setting('application_name'), users_changes_acting_role()
    FROM deleted AS d
    ORDER BY d.id;
    RETURN NULL;
END;
$$;

-- One updated user: the columns whose value changed, {"column": {"old": …, "new": …}}.
CREATE FUNCTION users_changes_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    changed jsonb := '{}';
BEGIN
    IF new.email IS DISTINCT FROM old.email THEN
        changed := changed || jsonb_build_object('email', jsonb_build_object('old', old.email, 'new', new.email));
    END IF;
    IF new.username IS DISTINCT FROM old.username THEN
        changed := changed
            || jsonb_build_object('username', jsonb_build_object('old', old.username, 'new', new.username));
    END IF;
    IF new.full_name IS DISTINCT FROM old.full_name THEN
        changed := changed
            || jsonb_build_object('full_name', jsonb_build_object('old', old.full_name, 'new', new.full_name));
    END IF;
    IF new.bio IS DISTINCT FROM old.bio THEN
        changed := changed || jsonb_build_object('bio', jsonb_build_object('old', old.bio, 'new', new.bio));
    END IF;
    IF new.status IS DISTINCT FROM old.status THEN
        changed := changed || jsonb_build_object('status', jsonb_build_object('old', old.status, 'new', new.status));
    END IF;
    IF new.is_verified IS DISTINCT FROM old.is_verified THEN
        changed := changed
            || jsonb_build_object('is_verified', jsonb_build_object('old', old.is_verified, 'new', new.is_verified));
    END IF;
    IF new.is_admin IS DISTINCT FROM old.is_admin THEN
        changed := changed
            || jsonb_build_object('is_admin', jsonb_build_object('old', old.is_admin, 'new', new.is_admin));
    END IF;
    IF new.hashed_password IS DISTINCT FROM old.hashed_password THEN
        changed := changed || '{"hashed_password": {}}'::jsonb;  -- that it changed, never a value
    END IF;
    INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user, changed)
    VALUES (
        pg_current_xact_id(), 'update', new.id, new.version, statement_timestamp(),
        current_setting('application_name'), users_changes_acting_role(), changed
    );
    RETURN NULL;
END;
$$;

-- Delete the oldest rows of the trail while they are older than `retention`, at most `batch` of them,
-- in the caller's (short) transaction; returns how many (0: nothing to purge, or another purge is
-- running). Call it again while it returns `batch`.
CREATE FUNCTION users_changes_purge(retention interval, batch integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    purged bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock('users_changes'::regclass::oid::int, 0) THEN
        RETURN 0;
    END IF;
    WITH head AS (
        -- The first rows of the trail, and whether a row young enough to keep came at or before each:
        -- only the prefix before the first such row goes, so what is left is always the trail after
        -- the horizon, and a purge reads at most `batch` rows whatever the table holds.
        SELECT
            c.xid, c.seq,
            bool_or(c.changed_at >= statement_timestamp() - retention) OVER (ORDER BY c.xid, c.seq) AS kept
        FROM (
            SELECT t.xid, t.seq, t.changed_at
            FROM users_changes AS t
            ORDER BY t.xid, t.seq
            LIMIT batch
        ) AS c
    ), gone AS (
        DELETE FROM users_changes AS c
        USING head
        WHERE NOT head.kept AND c.xid = head.xid AND c.seq = head.seq
        RETURNING c.xid, c.seq
    ), last_gone AS (
        SELECT gone.xid, gone.seq FROM gone ORDER BY gone.xid DESC, gone.seq DESC LIMIT 1
    ), moved AS (
        UPDATE users_changes_horizon AS h
        SET xid = last_gone.xid, seq = last_gone.seq
        FROM last_gone
        RETURNING h.xid
    )
    SELECT count(*) INTO purged FROM gone;
    RETURN purged;
END;
$$;

CREATE TRIGGER users_changes_created AFTER INSERT ON users
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION users_changes_created();

CREATE TRIGGER users_changes_deleted AFTER DELETE ON users
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION users_changes_deleted();

CREATE TRIGGER users_changes_updated AFTER UPDATE ON users
FOR EACH ROW EXECUTE FUNCTION users_changes_updated();

ALTER FUNCTION users_changes_acting_role() OWNER TO datasvc_owner;
ALTER FUNCTION users_changes_created() OWNER TO datasvc_owner;
ALTER FUNCTION users_changes_deleted() OWNER TO datasvc_owner;
ALTER FUNCTION users_changes_updated() OWNER TO datasvc_owner;
ALTER FUNCTION users_changes_purge(interval, integer) OWNER TO datasvc_owner;
REVOKE ALL ON FUNCTION users_changes_created() FROM public;
REVOKE ALL ON FUNCTION users_changes_deleted() FROM public;
REVOKE ALL ON FUNCTION users_changes_updated() FROM public;
REVOKE ALL ON FUNCTION users_changes_purge(interval, integer) FROM public;
GRANT EXECUTE ON FUNCTION users_changes_purge(interval, integer) TO datasvc_app;
GRANT SELECT ON users_changes, users_changes_horizon TO datasvc_app;

COMMENT ON TABLE users_changes IS 'Audit trail of users: one row per created, updated or deleted user, written by the users_changes_* triggers in the writing transaction; read in (xid, seq) order by the change feed. Purged by users_changes_purge(). Migration 0015 explains it.';
COMMENT ON COLUMN users_changes.xid IS 'The writing transaction (pg_current_xact_id()); the feed hands out only rows below its snapshot''s xmin.';
COMMENT ON COLUMN users_changes.seq IS 'Order of the rows of one transaction (cached sequence: not an order across transactions).';
COMMENT ON COLUMN users_changes.op IS 'create, update or delete.';
COMMENT ON COLUMN users_changes.user_id IS 'users.id of the changed user (not a foreign key: the user may be gone).';
COMMENT ON COLUMN users_changes.version_after IS 'users.version after the write; for a delete, one past the last.';
COMMENT ON COLUMN users_changes.changed_at IS 'statement_timestamp() of the writing statement.';
COMMENT ON COLUMN users_changes.caller IS 'application_name of the writing session: datasvc:<caller> for the service serving a caller.';
COMMENT ON COLUMN users_changes.db_user IS 'The database role the session acted as (SET ROLE''s, else the login).';
COMMENT ON COLUMN users_changes.changed IS 'Updates only: {"column": {"old": v, "new": v}} for each column that changed; hashed_password as {} (never a value). NULL for create and delete.';
COMMENT ON TABLE users_changes_horizon IS 'One row: the last (xid, seq) users_changes_purge() deleted; a feed cursor below it is expired.';
COMMENT ON FUNCTION users_changes_purge(interval, integer) IS 'Deletes at most batch of the oldest users_changes rows older than retention; returns how many (0: none, or another purge is running).';
