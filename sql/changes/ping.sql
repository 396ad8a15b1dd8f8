-- name: ping :value
-- The change feed's listening connection still answers: a network that went silent never closes it.
-- expect-plan: Result
-- retry: safe
SELECT true;
