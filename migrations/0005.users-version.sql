-- Every user row carries a version, bumped by every write: the ETag is derived from it.
-- depends: 0004.users-search-index
--
-- Why not updated_at, the ETag until now: it is now(), the start of the writing *transaction*. A writer
-- that started before another but queued on the row lock writes an older timestamp after a newer one,
-- and two writes in the same microsecond share one. A counter bumped under the row lock cannot repeat or
-- go backwards: the trigger reads OLD after the lock is taken, so OLD is the latest committed version.

-- A constant default makes ADD COLUMN a catalog-only change (PostgreSQL 11+): no table rewrite, the
-- ACCESS EXCLUSIVE lock is held for milliseconds. Never queue every request behind a long one, though.
SET lock_timeout = '5s';

ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- The same trigger function as 0001's, now bumping the version too (updated_at stays: it is data).
CREATE OR REPLACE FUNCTION users_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

COMMENT ON COLUMN users.version IS 'Row version: 1 at insert, +1 on every update (trigger users_touch_updated_at); the ETag.';
COMMENT ON COLUMN users.updated_at IS 'When the row last changed (transaction start); maintained by trigger users_touch_updated_at. Not a version: see users.version.';
