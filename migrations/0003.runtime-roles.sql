-- Least privilege: the schema belongs to the NOLOGIN role datasvc_owner; the service connects as
-- datasvc_app, which may only read and write user rows (no DDL, no TRUNCATE, no hashed_password or
-- is_admin at insert), with its timeouts set on the role so they hold behind any connection pooler.
-- depends: 0001.create-users

-- Roles are cluster-wide and this migration runs once per database (many databases share a test
-- cluster): create each role only if it is missing, and tolerate a concurrent migrator creating it first.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datasvc_owner') THEN
        BEGIN
            CREATE ROLE datasvc_owner NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datasvc_app') THEN
        BEGIN
            -- LOGIN without a password: it can sign in only where pg_hba.conf trusts it, until the
            -- operator sets one (ALTER ROLE datasvc_app PASSWORD ...). See docs/security.md.
            CREATE ROLE datasvc_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- Set on the role, not only by the service at connect time: they also bind psql sessions and
    -- connections made through a pooler that drops startup parameters. Skipped when already set, so
    -- concurrent migrators do not collide on pg_db_role_setting.
    IF NOT EXISTS (
        SELECT FROM pg_db_role_setting AS s
        JOIN pg_roles AS r ON r.oid = s.setrole
        WHERE r.rolname = 'datasvc_app' AND s.setdatabase = 0
            AND s.setconfig @> ARRAY[
                'statement_timeout=5s', 'lock_timeout=2s', 'idle_in_transaction_session_timeout=10s'
            ]
    ) THEN
        ALTER ROLE datasvc_app SET statement_timeout = '5s';
        ALTER ROLE datasvc_app SET lock_timeout = '2s';
        ALTER ROLE datasvc_app SET idle_in_transaction_session_timeout = '10s';
    END IF;
    -- A migrator that is not a superuser must be able to act as the owner for later migrations.
    IF NOT pg_has_role(current_user, 'datasvc_owner', 'MEMBER') THEN
        EXECUTE format('GRANT datasvc_owner TO %I', current_user);
    END IF;
END
$$;

-- Ownership changes take an ACCESS EXCLUSIVE lock, briefly; never queue every request behind it.
SET lock_timeout = '5s';

ALTER TABLE users OWNER TO datasvc_owner;
ALTER FUNCTION users_touch_updated_at() OWNER TO datasvc_owner;

GRANT SELECT, DELETE ON users TO datasvc_app;
-- Column lists: the database itself refuses to let the service set id, created_at, updated_at,
-- status or is_admin at creation, or hashed_password, username, id or created_at afterwards.
GRANT INSERT (email, username, hashed_password, full_name, bio) ON users TO datasvc_app;
GRANT UPDATE (email, full_name, bio, status, is_verified, is_admin) ON users TO datasvc_app;

-- /health/ready compares applied migrations (yoyo's table) and their recorded file hashes.
GRANT SELECT ON _yoyo_migration TO datasvc_app;
DO $$
BEGIN
    IF to_regclass('datasvc_migration_file') IS NOT NULL THEN
        GRANT SELECT ON datasvc_migration_file TO datasvc_app;
    END IF;
END
$$;

COMMENT ON TABLE users IS 'Accounts of the users service; every statement that touches it lives in sql/users/. Owned by datasvc_owner; the service (datasvc_app) has column-limited DML only.';
