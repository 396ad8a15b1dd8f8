-- depends: 0015.users-changes
-- The audit trail of 0015 at a lower cost per write: the same triggers, rows, columns and values; three
-- function bodies do less.
--
-- Creates and deletes: still one INSERT per statement from the transition tables the counts triggers
-- (0009) collect anyway, without 0015's ORDER BY id: a statement's rows are recorded in the order it
-- wrote them (the transition table's order), which for ids from the identity is id order. The sort was a
-- fifth of what the trail added to a one-row create (callgrind, docs/benchmarks.md).
-- Updates: the changed columns are built without jsonb_build_object, which looks up how to convert each
-- of its arguments (key and value) in the catalogs at every call: a text column's old and new value
-- become {"old": …, "new": …} with jsonb_object(keys, values) (SQL NULL: JSON null, as before); a
-- boolean's, which can only have flipped, is one of two constants; each goes into the object with
-- jsonb_set. Each column is still compared with IS DISTINCT FROM in its own IF: plpgsql prepares an
-- expression when first evaluated in a transaction, so the building expressions of columns that did not
-- change are never prepared. Same JSON as 0015's, key for key.
--
-- Measured and not done (docs/benchmarks.md has the figures): a BEFORE UPDATE row trigger instead of
-- the AFTER one (hardly cheaper, and its record would depend on firing after users_touch_updated_at,
-- i.e. on trigger names); a statement-level UPDATE trigger with transition tables (dearer for one row);
-- dropping users_changes_user_id_idx (cheaper, but "who changed user 42" would read the whole trail);
-- SECURITY DEFINER without SET search_path (cheaper, but names would resolve with the writer's path);
-- an unlogged table (the trail must survive a crash).
--
-- Locks: CREATE OR REPLACE FUNCTION takes no lock on users; a write in progress finishes with the body
-- it started with.

SET lock_timeout = '5s';

-- One updated user: the columns whose value changed, {"column": {"old": …, "new": …}}.
CREATE OR REPLACE FUNCTION users_changes_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    changed jsonb := '{}';
BEGIN
    IF new.email IS DISTINCT FROM old.email THEN
        changed := jsonb_set(changed, '{email}', jsonb_object('{old,new}', array[old.email, new.email]));
    END IF;
    IF new.username IS DISTINCT FROM old.username THEN
        changed := jsonb_set(changed, '{username}', jsonb_object('{old,new}', array[old.username, new.username]));
    END IF;
    IF new.full_name IS DISTINCT FROM old.full_name THEN
        changed := jsonb_set(changed, '{full_name}', jsonb_object('{old,new}', array[old.full_name, new.full_name]));
    END IF;
    IF new.bio IS DISTINCT FROM old.bio THEN
        changed := jsonb_set(changed, '{bio}', jsonb_object('{old,new}', array[old.bio, new.bio]));
    END IF;
    IF new.status IS DISTINCT FROM old.status THEN
        changed := jsonb_set(changed, '{status}', jsonb_object('{old,new}', array[old.status, new.status]));
    END IF;
    IF new.is_verified IS DISTINCT FROM old.is_verified THEN  -- NOT NULL: it flipped
        changed := jsonb_set(
            changed, '{is_verified}',
            CASE WHEN new.is_verified THEN '{"old": false, "new": true}'::jsonb ELSE '{"old": true, "new": false}' END
        );
    END IF;
    IF new.is_admin IS DISTINCT FROM old.is_admin THEN  -- NOT NULL: it flipped
        changed := jsonb_set(
            changed, '{is_admin}',
            CASE WHEN new.is_admin THEN '{"old": false, "new": true}'::jsonb ELSE '{"old": true, "new": false}' END
        );
    END IF;
    IF new.hashed_password IS DISTINCT FROM old.hashed_password THEN
        changed := jsonb_set(changed, '{hashed_password}', '{}');  -- that it changed, never a value
    END IF;
    INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user, changed)
    VALUES (
        pg_current_xact_id(), 'update', new.id, new.version, statement_timestamp(),
        current_setting('application_name'), users_changes_acting_role(), changed
    );
    RETURN NULL;
END;
$$;

-- The users a statement inserted, one row each, in the order it wrote them.
CREATE OR REPLACE FUNCTION users_changes_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user)
    SELECT pg_current_xact_id(), 'create', i.id, i.version, statement_timestamp(),
        current_setting('application_name'), users_changes_acting_role()
    FROM inserted AS i;
    RETURN NULL;
END;
$$;

-- The users a statement deleted, in the order it deleted them; the version is one past the last they had.
CREATE OR REPLACE FUNCTION users_changes_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user)
    SELECT pg_current_xact_id(), 'delete', d.id, d.version + 1, statement_timestamp(),
        current_setting('application_name'), users_changes_acting_role()
    FROM deleted AS d;
    RETURN NULL;
END;
$$;

COMMENT ON TABLE users_changes IS 'Audit trail of users: one row per created, updated or deleted user, written by the users_changes_* triggers in the writing transaction; read in (xid, seq) order by the change feed. Purged by users_changes_purge(). Migrations 0015 and 0016 explain it.';
