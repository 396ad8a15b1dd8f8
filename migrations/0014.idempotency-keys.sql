-- depends: 0013.users-estimate-search-text
-- Idempotency keys (Idempotency-Key header): a write and the record of its answer commit together.
--
-- Each keyed write statement (sql/users/*_keyed.sql, sql/users/batch_create.sql) inserts its row here in
-- the same statement as the write, so the two commit or roll back as one. The primary key makes a key
-- usable once per scope: a concurrent request with the same key waits for the first to commit, then
-- fails on this key (or on the user's own unique columns) and the service answers it with the record.
-- Rows live until expires_at, then the service deletes them in bounded batches, oldest first
-- (sql/idempotency/purge.sql, through idempotency_keys_expires_at_idx).
SET lock_timeout = '5s';

CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    request_key text NOT NULL,
    fingerprint bytea NOT NULL,
    status bigint NOT NULL,
    answer json,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, request_key),
    CONSTRAINT idempotency_keys_request_key_check CHECK (char_length(request_key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_status_check CHECK (status BETWEEN 200 AND 299)
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

ALTER TABLE idempotency_keys OWNER TO datasvc_owner;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO datasvc_app;

COMMENT ON TABLE idempotency_keys IS
'The answer of each write sent with an Idempotency-Key, recorded in the write''s own statement; a retry with the same key and request is answered from here.';
COMMENT ON COLUMN idempotency_keys.scope IS
'The caller the key belongs to (its token''s name; empty when the service runs without tokens).';
COMMENT ON COLUMN idempotency_keys.request_key IS 'The Idempotency-Key as sent (1 to 255 visible ASCII characters).';
COMMENT ON COLUMN idempotency_keys.fingerprint IS
'sha256 of the request (method, path, canonical JSON body, If-Match): the same key with another request is refused.';
COMMENT ON COLUMN idempotency_keys.status IS 'HTTP status of the recorded answer (2xx only: failures are never recorded).';
COMMENT ON COLUMN idempotency_keys.answer IS
'What the answer showed: the user as written (row_to_json), a batch''s users in request order, or NULL (DELETE).';
COMMENT ON COLUMN idempotency_keys.expires_at IS
'From then on the key may be purged (DATASVC_IDEMPOTENCY_TTL after the write).';
COMMENT ON INDEX idempotency_keys_expires_at_idx IS 'The purge''s walk over expired keys, oldest first.';
