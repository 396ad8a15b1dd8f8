-- How many users the database holds, or -1 when it has no users table yet.
SELECT to_regclass('public.users') IS NOT NULL AS has_users \gset
\if :has_users
SELECT count(*) FROM users;
\else
SELECT -1;
\endif
