-- name: batch_create :many
-- POST /api/v1/users:batchCreate: insert every user of the arrays (one per ordinal), or none of them.
-- One statement: the conflicts are looked for first, in its snapshot, and the INSERT runs only if there
-- are none, so a refusal names every conflicting item rather than the first the INSERT would meet:
--   a username or email (caseless(), as users_email_caseless_key compares) already taken, or one that
--   an earlier item of the batch repeats. The rows are then one of:
--   ordinal, field, reason set (answer NULL): a conflict, 1-based position; nothing was written;
--   answer set: a user as stored, in request order (the INSERT ... SELECT of unnest, one statement: its
--   per-statement counts trigger adds one delta row per combination, so the totals stay exact);
--   known_status set (one row): the Idempotency-Key was used before, its record.
-- A concurrent writer can still take a username between the snapshot and the INSERT: the INSERT then
-- fails with 23505 and the service runs this statement again, which then names it.
-- With an Idempotency-Key (scope and key not NULL) the answer is recorded in the same statement.
-- params: emails, usernames, hashed_passwords, full_names, bios, scope, key, fingerprint, ttl_seconds
-- expect-plan: Insert on users
WITH known AS (
    SELECT status, answer, fingerprint
    FROM idempotency_keys
    WHERE scope = $6 AND request_key = $7
),

input AS MATERIALIZED (
    SELECT
        i.ordinal, i.email, i.username, i.hashed_password, i.full_name, i.bio,
        caseless(i.email) AS folded,
        row_number() OVER (PARTITION BY caseless(i.email) ORDER BY i.ordinal) AS email_seen,
        row_number() OVER (PARTITION BY i.username ORDER BY i.ordinal) AS username_seen
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        WITH ORDINALITY AS i (email, username, hashed_password, full_name, bio, ordinal)
),

clashes AS (
    SELECT
        input.ordinal,
        'email' AS field,
        CASE WHEN input.email_seen > 1 THEN 'repeated in this batch' ELSE 'taken' END AS reason
    FROM input
    WHERE
        input.email_seen > 1
        OR EXISTS (
            SELECT FROM users
            WHERE caseless(users.email) = input.folded
        )
    UNION ALL
    SELECT
        input.ordinal,
        'username' AS field,
        CASE WHEN input.username_seen > 1 THEN 'repeated in this batch' ELSE 'taken' END AS reason
    FROM input
    WHERE
        input.username_seen > 1
        OR EXISTS (
            SELECT FROM users
            WHERE users.username = input.username
        )
),

created AS (
    INSERT INTO users (email, username, hashed_password, full_name, bio)
    SELECT input.email, input.username, input.hashed_password, input.full_name, input.bio
    FROM input
    WHERE NOT EXISTS (SELECT FROM clashes) AND NOT EXISTS (SELECT FROM known)
    ORDER BY input.ordinal
    RETURNING
        id, email, username, full_name, bio, status,
        is_verified, is_admin, created_at, updated_at, version
),

answered AS MATERIALIZED (
    SELECT
        input.ordinal,
        row_to_json(created) AS answer
    FROM created
    INNER JOIN input ON created.username = input.username
),

recorded AS (
    INSERT INTO idempotency_keys (scope, request_key, fingerprint, status, answer, expires_at)
    SELECT
        $6 AS scope, $7 AS request_key, $8 AS fingerprint, 201 AS status,
        json_agg(answered.answer ORDER BY answered.ordinal) AS answer,
        now() + make_interval(secs => $9) AS expires_at
    FROM answered
    WHERE $7::text IS NOT NULL
    HAVING count(*) > 0
)

SELECT
    answered.ordinal,
    NULL::text AS field,
    NULL::text AS reason,
    answered.answer,
    NULL::bigint AS known_status,
    NULL::json AS known_answer,
    NULL::bytea AS known_fingerprint
FROM answered
UNION ALL
SELECT
    clashes.ordinal,
    clashes.field,
    clashes.reason,
    NULL::json AS answer,
    NULL::bigint AS known_status,
    NULL::json AS known_answer,
    NULL::bytea AS known_fingerprint
FROM clashes
WHERE NOT EXISTS (SELECT FROM known)
UNION ALL
SELECT
    NULL::bigint AS ordinal,
    NULL::text AS field,
    NULL::text AS reason,
    NULL::json AS answer,
    known.status AS known_status,
    known.answer AS known_answer,
    known.fingerprint AS known_fingerprint
FROM known
ORDER BY ordinal, field
