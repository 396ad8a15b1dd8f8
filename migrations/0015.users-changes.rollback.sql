-- No audit trail: the triggers first (DROP TRIGGER takes ACCESS EXCLUSIVE on users, briefly), then the
-- functions and the tables; the recorded changes are lost.
SET lock_timeout = '5s';

DROP TRIGGER users_changes_created ON users;
DROP TRIGGER users_changes_deleted ON users;
DROP TRIGGER users_changes_updated ON users;
DROP FUNCTION users_changes_created();
DROP FUNCTION users_changes_deleted();
DROP FUNCTION users_changes_updated();
DROP FUNCTION users_changes_purge(interval, integer);
DROP FUNCTION users_changes_acting_role();
DROP TABLE users_changes_horizon;
DROP TABLE users_changes;
