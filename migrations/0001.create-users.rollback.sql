-- Drop the users table and its trigger function: every row is lost.
SET lock_timeout = '5s';

DROP TABLE users;
DROP FUNCTION users_touch_updated_at();
