-- Create the users table, its constraints, indexes and updated_at trigger.
-- depends:

-- A new, empty table: no lock is held for long, but never queue behind a stuck session.
SET lock_timeout = '5s';

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY,
    email text NOT NULL,
    username text NOT NULL,
    hashed_password text NOT NULL,
    full_name text,
    bio text,
    status text NOT NULL DEFAULT 'active',
    is_verified boolean NOT NULL DEFAULT false,
    is_admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_check CHECK (
        char_length(email) BETWEEN 3 AND 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'
    ),
    CONSTRAINT users_username_check CHECK (username ~ '^[A-Za-z0-9_-]{3,50}$'),
    CONSTRAINT users_hashed_password_check CHECK (char_length(hashed_password) BETWEEN 60 AND 255),
    CONSTRAINT users_full_name_check CHECK (char_length(full_name) <= 100),
    CONSTRAINT users_bio_check CHECK (char_length(bio) <= 1000),
    CONSTRAINT users_status_check CHECK (status IN ('active', 'inactive', 'suspended'))
);

-- Email is unique regardless of case; lookups by email use the same expression.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_status_created_at_idx ON users (status, created_at);
CREATE INDEX users_status_is_verified_idx ON users (status, is_verified);

CREATE FUNCTION users_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_touch_updated_at
BEFORE UPDATE ON users
FOR EACH ROW EXECUTE FUNCTION users_touch_updated_at();

COMMENT ON TABLE users IS 'Accounts of the users service; every statement that touches it lives in sql/users/.';
COMMENT ON COLUMN users.id IS 'Surrogate key, assigned by the database (identity, never by a caller).';
COMMENT ON COLUMN users.email IS 'Contact address; unique case-insensitively (users_email_lower_key).';
COMMENT ON COLUMN users.username IS 'Login name: 3-50 of [A-Za-z0-9_-], unique as written.';
COMMENT ON COLUMN users.hashed_password IS 'Password hash made by the caller (e.g. bcrypt); returned only by auth.lookup.';
COMMENT ON COLUMN users.full_name IS 'Display name, at most 100 characters; NULL when unknown.';
COMMENT ON COLUMN users.bio IS 'Free text, at most 1000 characters; NULL when empty.';
COMMENT ON COLUMN users.status IS 'active, inactive or suspended.';
COMMENT ON COLUMN users.is_verified IS 'Whether the email address was confirmed.';
COMMENT ON COLUMN users.is_admin IS 'Administrator flag; never settable at creation.';
COMMENT ON COLUMN users.created_at IS 'When the row was inserted.';
COMMENT ON COLUMN users.updated_at IS 'When the row last changed; maintained by trigger users_touch_updated_at.';
