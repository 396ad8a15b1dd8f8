-- Back to 0001's trigger and no version column (ETags then come from updated_at again).
SET lock_timeout = '5s';

CREATE OR REPLACE FUNCTION users_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

ALTER TABLE users DROP COLUMN version;

COMMENT ON COLUMN users.updated_at IS 'When the row last changed; maintained by trigger users_touch_updated_at.';
