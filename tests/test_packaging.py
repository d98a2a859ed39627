"""An installed wheel finds the bundled destinations, templates, examples and schemas.

The wheel is built from this checkout (no network: no build isolation, no
dependencies) and unpacked into a folder that is put first on the import path;
the commands then run from an empty folder, so nothing can come from the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            dist,
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("dest_engine-*.whl")
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_wheel_carries_the_bundled_files(site: Path) -> None:
    bundled = site / "engine" / "bundled"
    assert (bundled / "destinations" / "outreach.json").is_file()
    assert (bundled / "templates" / "outreach" / "prospect.json.j2").is_file()
    assert (bundled / "examples" / "outreach" / "activation.json").is_file()
    assert (site / "engine" / "schemas" / "destination.schema.json").is_file()
    assert (site / "engine" / "schemas" / "activation.schema.json").is_file()


def test_installed_package_validates_and_renders_from_an_empty_folder(
    site: Path, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import engine; print(engine.__file__)"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == str(site / "engine" / "__init__.py")

    validated = run(site, tmp_path, "validate", "outreach")
    assert (validated.returncode, validated.stdout) == (
        0,
        "outreach: valid (0 errors, 0 warnings)\n",
    )

    rendered = run(site, tmp_path, "render", "outreach", "--limit", "1")
    assert rendered.returncode == 0, rendered.stderr
    request = json.loads(rendered.stdout)
    assert request["url"] == "https://api.outreach.io/api/v2/prospects/1001"
    assert request["body"]["data"]["attributes"]["custom7"] == "realized"
