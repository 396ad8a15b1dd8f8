"""The access log's lines as a test sees them: what the app wrote to stdout (pytest's ``capfd``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest


def access_lines(app: Any, capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Flush the app's access log and return its JSON lines written since the last call."""
    app.state.access_log.flush()
    out = capfd.readouterr().out
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "datasvc.access"]
