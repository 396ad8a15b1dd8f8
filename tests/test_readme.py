"""The README's curl examples run top to bottom against a fresh `datasvc serve`, each with the status shown.

Every shell block of README.md that calls curl on ``localhost:8000`` (where `scripts/serve` listens) is
taken in order; a block that starts a server of its own elsewhere (a measurement's recipe) is not an
example of the running service, and is left out; each command in it ends with a comment
naming the status it answers (``# 201: user 1``). All blocks run in one shell against one live server on a
fresh database, as a reader pastes them one after another, so an example that clashes with an earlier one
(a user deleted and then read) fails here. ``localhost:8000`` becomes the test server's address.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from datasvc.settings import PROJECT_ROOT, Settings
from tests.liveserver import LiveServer

BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHOWN = re.compile(r"\s#\s(\d{3})\b[^'\"]*$")  # a trailing "# 201..." comment, outside any quotes
# Our -w comes last, so it wins over an example's own (curl keeps the last one), and goes to stderr.
WRAPPER = """curl() { command curl "$@" -w '%{stderr}status %{http_code}\\n'; }"""


@dataclass(frozen=True)
class Example:
    command: str  # as written, continuation lines joined
    status: int  # the status its comment shows
    line: int  # where it starts in README.md


def examples(readme: Path) -> list[Example]:
    """Every command of every curl block, in order; each must show the status it answers."""
    text = readme.read_text()
    found: list[Example] = []
    for block in BLOCK.finditer(text):
        if "curl " not in block.group(1) or "localhost:8000" not in block.group(1):
            continue
        first = text.count("\n", 0, block.start(1)) + 1
        pending: list[str] = []
        for offset, line in enumerate(block.group(1).splitlines()):
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue  # a comment line shows output; it is not a command
            pending.append(line.removesuffix("\\").rstrip() if line.endswith("\\") else line)
            if line.endswith("\\"):
                continue
            command = " ".join(pending)
            start = first + offset - len(pending) + 1
            pending = []
            if "curl " not in command:
                found.append(Example(command, 0, start))  # sets a variable the next commands use
                continue
            shown = SHOWN.search(command)
            assert shown, f"README.md:{start}: a curl example must end with '# <status>': {command}"
            found.append(Example(command, int(shown.group(1)), start))
    return found


def _run(commands: list[Example], base: str) -> list[list[int]]:
    """Run the commands in one bash, in order; the statuses each one's curl calls answered."""
    marker = "--- end of example ---"
    script = [WRAPPER]
    for example in commands:
        script += [example.command.replace("localhost:8000", base), f"echo '{marker}' >&2"]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "*", "no_proxy": "*"},
        check=False,
    )
    statuses: list[list[int]] = [[]]
    for line in done.stderr.splitlines():
        if line == marker:
            statuses.append([])
        elif line.startswith("status "):
            statuses[-1].append(int(line.split()[1]))
    assert done.returncode == 0, done.stderr
    return statuses[: len(commands)]


def test_readme_examples_are_found_and_each_shows_its_status():
    found = examples(PROJECT_ROOT / "README.md")
    calls = [e for e in found if e.status]
    assert len(calls) >= 10, found
    assert {e.status for e in calls} >= {200, 201, 204, 412}


def test_readme_curl_examples_run_top_to_bottom_on_a_fresh_server(settings: Settings, tmp_path):
    found = examples(PROJECT_ROOT / "README.md")
    with LiveServer(settings, tmp_path / "serve.log") as server:
        statuses = _run(found, server.base_url.removeprefix("http://"))
    for example, answered in zip(found, statuses, strict=True):
        if not example.status:
            continue
        assert answered, f"README.md:{example.line}: no request was made: {example.command}"
        assert answered[-1] == example.status, (
            f"README.md:{example.line}: answered {answered[-1]}, the README shows {example.status}: "
            f"{example.command}"
        )
