"""The error tree: one class per problem type, each sent type documented in docs/api.md."""

import re

from datasvc.errors import ClientError, DatasvcError, ServiceUnavailable
from datasvc.settings import PROJECT_ROOT


def problem_types() -> dict[str, type[DatasvcError]]:
    """Every problem ``type`` the service can send (its slug) and its class: the leaves of the tree."""
    found: dict[str, type[DatasvcError]] = {}
    pending: list[type[DatasvcError]] = [DatasvcError]
    while pending:
        cls = pending.pop()
        children = cls.__subclasses__()
        pending += children
        if not children:
            if cls.slug in found:
                raise TypeError(f"{cls.__name__} and {found[cls.slug].__name__} share the slug {cls.slug}")
            found[cls.slug] = cls
    return found


def test_each_problem_type_is_one_class():
    types = problem_types()  # raises if two leaves share a slug
    for slug, cls in types.items():
        assert cls.slug == slug
        assert not cls.__subclasses__()
    # The bases are never sent: each answer names a leaf, whose slug is its own.
    for base in (DatasvcError, ClientError, ServiceUnavailable):
        assert base not in types.values()
    assert {cls.status for cls in types.values()} >= {400, 404, 409, 422, 500, 503, 504}


def _readme_problem_types() -> dict[str, int]:
    """docs/api.md's table of problem types: ``| `slug` | status | when |`` rows under "## Errors"."""
    text = (PROJECT_ROOT / "docs" / "api.md").read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z-]+)` \| (\d{3}) \|", section, flags=re.M)
    return {slug: int(status) for slug, status in rows}


def test_the_api_docs_list_every_problem_type_the_code_sends():
    documented = _readme_problem_types()
    sent = {slug: cls.status for slug, cls in problem_types().items()}
    assert documented == sent
