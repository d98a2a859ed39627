"""Fixtures that test modules ask for by name; none is applied on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from push_support import CLIENT_ID, CLIENT_SECRET, ROOT, FakeOutreach


@pytest.fixture
def fake() -> Iterator[FakeOutreach]:
    with FakeOutreach() as server:
        yield server
    assert server.errors == []  # no bug inside the fake itself


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Credentials and ledgers in tmp folders, for this process and its children (they
    inherit the environment); the fake's OAuth client. Returns the data folder."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DEST_ENGINE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DEST_ENGINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEST_ENGINE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("DEST_ENGINE_CLIENT_SECRET", CLIENT_SECRET)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"
