-- name: privileges :one
-- Whether the service's login is a superuser, or owns (or may become the owner of) the users table:
-- either can drop the schema or read and write any column, which the runtime role datasvc_app cannot.
-- Checked once at start-up for a warning (docs/security.md).
-- expect-plan: Nested Loop Left Join (catalog lookups by name and oid)
-- retry: safe
SELECT
    r.rolname AS login_role,
    r.rolsuper AS is_super,
    coalesce(pg_has_role(current_user, c.relowner, 'MEMBER'), false) AS is_owner
FROM pg_roles AS r
LEFT JOIN pg_class AS c ON c.oid = to_regclass('users')
WHERE r.rolname = current_user
