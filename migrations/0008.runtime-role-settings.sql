-- The runtime role's session settings, stored on the role (pg_db_role_setting) so that they hold behind
-- a transaction pooler: with DATASVC_POOL_MODE=transaction the service sends no session SET and no
-- startup parameter but application_name (PgBouncer refuses the others, or drops them silently), and
-- checks at start-up that these are in force (datasvc/pooler.py, docs/scaling.md).
-- depends: 0005.users-version
--
-- plan_cache_mode is pinned to auto: the statements' `-- plan-cache:` headers assume it (a database-wide
-- force_generic_plan would plan the listing's optional filters generically). The timeouts are 0003's
-- defaults, set only where the role has none, so values an operator chose stay (the service refuses to
-- start in transaction mode when they differ from DATASVC_STATEMENT_TIMEOUT / DATASVC_LOCK_TIMEOUT).
-- Role settings are cluster-wide; each is written only when missing, so migrators of several databases
-- of one cluster do not collide on pg_db_role_setting.

SET lock_timeout = '5s';

DO $$
DECLARE
    stored text[];
BEGIN
    SELECT s.setconfig INTO stored
    FROM pg_db_role_setting AS s
    WHERE s.setrole = 'datasvc_app'::regrole AND s.setdatabase = 0;
    stored := coalesce(stored, '{}');
    IF NOT stored @> ARRAY['plan_cache_mode=auto'] THEN
        ALTER ROLE datasvc_app SET plan_cache_mode = 'auto';
    END IF;
    IF NOT EXISTS (SELECT FROM unnest(stored) AS c WHERE c LIKE 'statement_timeout=%') THEN
        ALTER ROLE datasvc_app SET statement_timeout = '5s';
    END IF;
    IF NOT EXISTS (SELECT FROM unnest(stored) AS c WHERE c LIKE 'lock_timeout=%') THEN
        ALTER ROLE datasvc_app SET lock_timeout = '2s';
    END IF;
    IF NOT EXISTS (SELECT FROM unnest(stored) AS c WHERE c LIKE 'idle_in_transaction_session_timeout=%') THEN
        ALTER ROLE datasvc_app SET idle_in_transaction_session_timeout = '10s';
    END IF;
END
$$;
