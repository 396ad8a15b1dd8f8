-- Client statements still running in this database (other than this one): the harness waits for 0.
SELECT count(*)
FROM pg_stat_activity
WHERE datname = current_database()
    AND state <> 'idle'
    AND pid <> pg_backend_pid()
    AND backend_type = 'client backend';
