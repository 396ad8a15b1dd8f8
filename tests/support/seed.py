"""Rows a test puts in the database before it asks the service about them."""

from __future__ import annotations

import psycopg

from tests.support.values import HASH


def seed_users(database_url: str, n: int) -> None:
    """n users with repeating names (a third NULL), statuses, flags and colliding timestamps."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO users (email, username, hashed_password, full_name, status, is_verified, is_admin,
                               created_at, updated_at)
            SELECT 'u' || i || '@example.com', 'user_' || lpad(i::text, 4, '0'), %(hash)s,
                   CASE WHEN i %% 3 = 0 THEN NULL ELSE 'Name ' || (i %% 5) END,
                   (ARRAY['active', 'inactive', 'suspended'])[1 + i %% 3],
                   i %% 2 = 0, i %% 7 = 0,
                   timestamptz '2024-01-01' + (i / 4) * interval '1 minute',
                   timestamptz '2024-06-01' - (i %% 6) * interval '1 hour'
            FROM generate_series(1, %(n)s) AS i
            """,
            {"hash": HASH, "n": n},
        )
