"""The query registry: every ``.sql`` file under ``sql/`` read into named statements at start-up.

The file format and its checks are `datasvc.sqlfiles`; the registry adds what spans files: a statement's
name is its namespace, the folder under ``sql/`` (``sql/users/get_by_id.sql`` → ``users.get_by_id``; a
file directly in ``sql/`` uses its stem), then its own name, and a name is defined once across the tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from datasvc.sqlfiles import RegistryError, Statement, parse_file

# The schema as pg_dump prints it (datasvc/schema.py), at the top of sql/: read by people, not loaded.
SCHEMA_FILE = "schema.sql"


class Registry(Mapping[str, Statement]):
    """Named statements, read-only once loaded."""

    def __init__(self, statements: Mapping[str, Statement]) -> None:
        self._statements = dict(sorted(statements.items()))

    def __getitem__(self, name: str) -> Statement:
        return self._statements[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)

    @classmethod
    def load(cls, root: Path) -> Registry:
        """Parse every ``*.sql`` file below ``root`` but `SCHEMA_FILE`; raise `RegistryError` on a defect."""
        if not root.is_dir():
            raise RegistryError(f"{root}: SQL folder not found")
        statements: dict[str, Statement] = {}
        for path in sorted(p for p in root.rglob("*.sql") if p != root / SCHEMA_FILE):
            for stmt in parse_file(path, namespace_for(root, path)):
                if stmt.name in statements:
                    first = statements[stmt.name]
                    raise RegistryError(
                        f"{stmt.location}: duplicate statement name {stmt.name!r} (first at {first.location})"
                    )
                statements[stmt.name] = stmt
        if not statements:
            raise RegistryError(f"{root}: no statements found")
        return cls(statements)


def namespace_for(root: Path, path: Path) -> str:
    parts = path.relative_to(root).parent.parts
    return ".".join(parts) if parts else path.stem
