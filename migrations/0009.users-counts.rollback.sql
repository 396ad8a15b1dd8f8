-- Back to counting users per request: drop the triggers first (DROP TRIGGER takes ACCESS EXCLUSIVE on
-- users, briefly), then the functions and the counts table.
SET lock_timeout = '5s';

DROP TRIGGER users_counts_inserted ON users;
DROP TRIGGER users_counts_deleted ON users;
DROP TRIGGER users_counts_moved ON users;
DROP TRIGGER users_counts_truncated ON users;
DROP FUNCTION users_counts_inserted();
DROP FUNCTION users_counts_deleted();
DROP FUNCTION users_counts_moved();
DROP FUNCTION users_counts_truncated();
DROP FUNCTION users_counts_fold_now_and_then();
DROP FUNCTION users_counts_compact();
DROP FUNCTION users_estimate(text, boolean, boolean, text);
DROP TABLE users_counts;
