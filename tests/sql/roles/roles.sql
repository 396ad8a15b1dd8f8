-- name: name_role :value
-- Name the test role the statements below act on, in this session (role names cannot be parameters).
-- params: name
-- expect-plan: Result (no table access)
SELECT set_config('datasvc_test.role', $1, false)

-- name: create_login :exec
-- A login role of the test's own (roles are cluster-wide: never alter the shared ones).
-- expect-plan: utility statement
DO $$
BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN', current_setting('datasvc_test.role'));
END
$$

-- name: grant_owner :exec
-- Make the test role a member of the schema's owner, datasvc_owner.
-- expect-plan: utility statement
DO $$
BEGIN
    EXECUTE format('GRANT datasvc_owner TO %I', current_setting('datasvc_test.role'));
END
$$

-- name: drop_login :exec
-- Drop the test role again.
-- expect-plan: utility statement
DO $$
BEGIN
    EXECUTE format('DROP ROLE IF EXISTS %I', current_setting('datasvc_test.role'));
END
$$

-- name: password_of :value
-- How a role's password is stored (superuser only): a SCRAM verifier, or NULL for none.
-- params: name
-- expect-plan: Index Scan using pg_authid_rolname_index on pg_authid
SELECT rolpassword
FROM pg_authid
WHERE rolname = $1

-- name: is_superuser :value
-- Whether the named role is a superuser.
-- params: name
-- expect-plan: Index Scan using pg_authid_rolname_index on pg_authid
SELECT rolsuper
FROM pg_roles
WHERE rolname = $1

-- name: disown :exec
-- Give everything the test role owns in this database (the database itself included) to the current
-- user, and drop its grants here, so that the role can be dropped.
-- expect-plan: utility statement
DO $$
BEGIN
    EXECUTE format('REASSIGN OWNED BY %I TO CURRENT_USER', current_setting('datasvc_test.role'));
    EXECUTE format('DROP OWNED BY %I', current_setting('datasvc_test.role'));
END
$$
