-- Forget every recorded answer: retries of writes made before the rollback are no longer recognised.
SET lock_timeout = '5s';

DROP TABLE IF EXISTS idempotency_keys;
