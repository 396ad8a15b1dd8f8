-- users_estimate as 0010 made it, which 0013 kept under another name: renamed back, not written again.
-- The index comments stay as 0013 wrote them (what each index is for; the figures are in docs/sql.md).
SET lock_timeout = '5s';

DROP FUNCTION users_estimate(text, boolean, boolean, text);

-- In the same transaction as the DROP: no caller sees users_estimate missing.
-- squawk-ignore renaming-object
ALTER FUNCTION users_estimate_before_0013(text, boolean, boolean, text) RENAME TO users_estimate;
