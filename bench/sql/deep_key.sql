-- The created_at of user :id: the keyset position ~90% deep in created_at DESC order, for pgbench.
SELECT created_at FROM users WHERE id = :id;
