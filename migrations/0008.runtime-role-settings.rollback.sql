-- plan_cache_mode goes back to the server's default (auto, unless postgresql.conf or the database says
-- otherwise). The timeouts stay on the role: migration 0003 set them first, and its rollback keeps the
-- roles and their settings too (they are cluster-wide; other databases may rely on them).
SET lock_timeout = '5s';

ALTER ROLE datasvc_app RESET plan_cache_mode;
