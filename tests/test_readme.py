"""The README's curl examples, then docs/api.md's, run top to bottom against a fresh `datasvc serve`.

Every shell block of README.md and then of docs/api.md (its examples continue the README's) that calls
curl on ``localhost:8000`` (where `scripts/serve` listens) is taken in order; a block that starts a server
of its own elsewhere (a measurement's recipe) is not an example of the running service, and is left out;
each command in it ends with a comment naming the status it answers (``# 201: user 1``). All blocks run
in one shell against one live server on a fresh database, as a reader pastes them one after another, so
an example that clashes with an earlier one (a user deleted and then read) fails here.
``localhost:8000`` becomes the test server's address. The Layout block is checked against the package.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.servers import ProcessServer

BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHOWN = re.compile(r"\s#\s(\d{3})\b[^'\"]*$")  # a trailing "# 201..." comment, outside any quotes
# Our -w comes last, so it wins over an example's own (curl keeps the last one), and goes to stderr.
WRAPPER = """curl() { command curl "$@" -w '%{stderr}status %{http_code}\\n'; }"""


@dataclass(frozen=True)
class Example:
    command: str  # as written, continuation lines joined
    status: int  # the status its comment shows
    line: int  # where it starts in its file
    file: str = "README.md"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# The files whose examples run, in this order, in one shell: docs/api.md's build on the README's users.
FILES = ("README.md", "docs/api.md")


def all_examples() -> list[Example]:
    """The examples of every file of `FILES`, in order."""
    return [e for name in FILES for e in examples(PROJECT_ROOT / name)]


def examples(readme: Path) -> list[Example]:
    """Every command of every curl block, in order; each must show the status it answers."""
    text = readme.read_text()
    file = readme.relative_to(PROJECT_ROOT).as_posix()
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
                found.append(Example(command, 0, start, file))  # sets a variable the next commands use
                continue
            shown = SHOWN.search(command)
            assert shown, f"{file}:{start}: a curl example must end with '# <status>': {command}"
            found.append(Example(command, int(shown.group(1)), start, file))
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
    found = all_examples()
    calls = [e for e in found if e.status]
    assert len(calls) >= 10, found
    assert {e.status for e in calls} >= {200, 201, 204, 412}
    readme_calls = [e for e in calls if e.file == "README.md"]
    assert {e.status for e in readme_calls} >= {200, 201, 204}, readme_calls


def test_readme_curl_examples_run_top_to_bottom_on_a_fresh_server(settings: Settings, tmp_path):
    found = all_examples()
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        statuses = _run(found, server.base_url.removeprefix("http://"))
    for example, answered in zip(found, statuses, strict=True):
        if not example.status:
            continue
        assert answered, f"{example.where}: no request was made: {example.command}"
        assert answered[-1] == example.status, (
            f"{example.where}: answered {answered[-1]}, the file shows {example.status}: {example.command}"
        )


def _layout() -> str:
    """The README's Layout block: one line per module, with its one job."""
    section = (PROJECT_ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1]
    block = BLOCK.search(section.replace("```\n", "```sh\n", 1))
    assert block, "README.md: the Layout section has no code block"
    return block.group(1)


def test_the_layout_names_every_module_of_the_package_and_no_other():
    layout = _layout()
    package = PROJECT_ROOT / "datasvc"
    modules = {p.name for p in package.glob("*.py")} - {"__init__.py", "__main__.py"}
    listed = set(re.findall(r"^  (\w+\.py)\s+\S", layout, re.M))
    assert listed == modules, f"README Layout: missing {modules - listed}, not in datasvc/ {listed - modules}"
    for sub in sorted(p for p in package.iterdir() if (p / "__init__.py").exists()):
        (line,) = [ln for ln in layout.splitlines() if ln.startswith(f"  {sub.name}/")]
        missing = {p.name for p in sub.glob("*.py")} - {"__init__.py"} - set(re.findall(r"\w+\.py", line))
        assert not missing, f"README Layout: {sub.name}/ does not name {missing}"


def test_the_layout_cli_line_names_every_command():
    helped = subprocess.run(
        [sys.executable, "-m", "datasvc", "--help"], capture_output=True, text=True, check=True
    ).stdout
    commands = re.findall(r"^ {4}(\w+)\s", helped, re.M)
    assert {"serve", "db", "migrate", "sql", "token"} <= set(commands), helped
    (line,) = [ln for ln in _layout().splitlines() if ln.startswith("  cli.py")]
    named = set(re.findall(r"\w+", line.split("—")[0]))
    assert set(commands) <= named, f"README Layout: cli.py does not name {set(commands) - named}"
