"""What the ledger, crash and follow tests share: constants, the login, the push command.

They run `dest-engine push` in this process or as a child process against the
fake Outreach server, with credentials and ledgers in tmp folders (the `env`
fixture in conftest.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from engine.cli import main

try:
    from tests.fake_outreach import FakeOutreach
except ImportError:  # tests/ itself on sys.path (pytest rootdir-less import)
    from fake_outreach import FakeOutreach  # type: ignore[import-not-found,no-redef]

ROOT = Path(__file__).resolve().parent.parent
ACTIVATION = ROOT / "examples" / "outreach" / "activation.json"
CONNECTION = "acme-sales"
HIGH_VALUE = "8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7"  # "High-value customers", Mapping ID 7
TRIAL = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"  # "Trial users", Mapping ID 12
MAPPING_IDS = {HIGH_VALUE: 7, TRIAL: 12}
CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"  # the fake's defaults
INTERRUPTED = "interrupted (SIGTERM); what was not sent stays staged"
PROGRESS = re.compile(r"^[\d,]+ outcomes so far: ")


def stderr_lines(text: str) -> list[str]:
    """stderr without the time-based progress lines (a slow machine may print some)."""
    return [line for line in text.splitlines() if not PROGRESS.match(line)]


def login(fake: FakeOutreach) -> dict[str, Any]:
    """`dest-engine auth import` of a fresh token set; returns the token set."""
    tokens = fake.issue_tokens()
    result = CliRunner().invoke(
        main, ["auth", "import", "outreach", "--connection", CONNECTION], input=json.dumps(tokens)
    )
    assert result.exit_code == 0, result.stderr
    return tokens


def push_args(fake: FakeOutreach, profiles: str | Path, *extra: str) -> list[str]:
    """`dest-engine push` of the example activation, as a child process's command line."""
    return [
        sys.executable,
        "-m",
        "engine",
        "push",
        "outreach",
        "--activation",
        str(ACTIVATION),
        "--profiles",
        str(profiles),
        *extra,
        "--endpoint-override",
        f"https://api.outreach.io={fake.url}",
    ]
