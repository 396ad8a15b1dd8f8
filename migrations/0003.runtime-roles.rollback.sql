-- Take back this database's grants and give the schema back to the migrating role. The roles stay:
-- they are cluster-wide and other databases may use them (drop them by hand once no database does:
-- DROP OWNED BY datasvc_app in each database, then DROP ROLE datasvc_app, datasvc_owner).
SET lock_timeout = '5s';

REVOKE ALL ON users FROM datasvc_app;
REVOKE ALL ON _yoyo_migration FROM datasvc_app;
DO $$
BEGIN
    IF to_regclass('datasvc_migration_file') IS NOT NULL THEN
        REVOKE ALL ON datasvc_migration_file FROM datasvc_app;
    END IF;
END
$$;

ALTER TABLE users OWNER TO CURRENT_USER;
ALTER FUNCTION users_touch_updated_at() OWNER TO CURRENT_USER;

COMMENT ON TABLE users IS 'Accounts of the users service; every statement that touches it lives in sql/users/.';
