-- name: select_marked :one
-- The two-process check's reader: only ever reads, and says so in its result.
-- params: id
-- expect-plan: Index Scan using users_pkey on users
SELECT
    'select' AS did,
    version
FROM users
WHERE id = $1

-- name: update_marked :one
-- The two-process check's writer: the same parameters and result shape as select_marked, so that a
-- statement executed under the other's name runs silently, and the result names who really ran.
-- params: id
-- expect-plan: Update on users (Index Scan using users_pkey)
UPDATE users SET bio = 'written'
WHERE id = $1
RETURNING 'update' AS did, version

-- name: my_name :value
-- The application_name of the server session answering this client right now.
-- expect-plan: Result (no table access)
SELECT current_setting('application_name')

-- name: sleep :value
-- Run for the seconds given (to meet statement_timeout).
-- params: seconds
-- expect-plan: Function Scan on pg_sleep
SELECT true AS slept
FROM pg_sleep($1::float8)

-- name: role_without_timeouts_here :exec
-- In this (per-test) database only, give datasvc_app no statement_timeout: as a role nobody configured.
-- A per-database role setting wins over the role-wide one and goes away with the database, so the
-- shared, cluster-wide role is left alone.
-- expect-plan: utility statement
DO $$
BEGIN
    EXECUTE format('ALTER ROLE datasvc_app IN DATABASE %I SET statement_timeout = 0', current_database());
END
$$

-- name: role_short_timeouts_here :exec
-- In this (per-test) database only, give datasvc_app a 300 ms statement_timeout (and the matching idle
-- timeout), so a test can watch the role's timeout cancel a statement within a second.
-- expect-plan: utility statement
DO $$
BEGIN
    EXECUTE format('ALTER ROLE datasvc_app IN DATABASE %I SET statement_timeout = 300', current_database());
    EXECUTE format(
        'ALTER ROLE datasvc_app IN DATABASE %I SET idle_in_transaction_session_timeout = 5300',
        current_database()
    );
END
$$
