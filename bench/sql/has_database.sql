-- 1 when the database named :'name' exists, nothing otherwise.
SELECT 1 FROM pg_database WHERE datname = :'name';
