-- Back to 0015's trigger functions: the changed columns built with jsonb_build_object, creates and
-- deletes recorded in id order. The trail itself is kept; so are the triggers (they call the functions
-- by name). CREATE OR REPLACE FUNCTION takes no lock on users.
SET lock_timeout = '5s';

-- One updated user: the columns whose value changed, {"column": {"old": …, "new": …}}.
CREATE OR REPLACE FUNCTION users_changes_updated() RETURNS trigger
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

-- The users a statement inserted, one row each, in id order.
CREATE OR REPLACE FUNCTION users_changes_created() RETURNS trigger
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
CREATE OR REPLACE FUNCTION users_changes_deleted() RETURNS trigger
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

COMMENT ON TABLE users_changes IS 'Audit trail of users: one row per created, updated or deleted user, written by the users_changes_* triggers in the writing transaction; read in (xid, seq) order by the change feed. Purged by users_changes_purge(). Migration 0015 explains it.';
