"""Benchmark: a `push` with nothing to send against `render` of the same profiles, in one run.

    python bench/ledger.py [--profiles 100000] [--repeat 2]

Generates synthetic Outreach profiles (JSONL), then times
- render: the engine pipeline (mapping, aggregation, sandboxed templates) over
  the profiles, counting the requests (`Pipeline.run` over `read_profiles`),
- push: `dest-engine push` of the same, unchanged profiles against a ledger
  already holding them as delivered (filled through `Sync.stage`,
  `Ledger.mark_in_flight` and `Ledger.delivered`, as a first push would leave it), pointed at a fake
  Outreach server that must receive no request at all.
Each is run `--repeat` times, alternating, keeping the best. Prints both times
and the ratio push / render (target: at most 1.5): a push that finds nothing
changed should cost about what rendering costs, not more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from engine.activation import load_activation
from engine.cli import main
from engine.ledger import Ledger, default_path
from engine.pipeline import Pipeline, redacted_auth_data
from engine.profiles import read_profiles
from engine.spec import Spec, load_spec
from engine.sync import Sync
from engine.templating import Request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from fake_outreach import FakeOutreach  # type: ignore[import-not-found]  # noqa: E402
from render import generate  # noqa: E402  (bench/render.py: the same synthetic profiles)

ACTIVATION = ROOT / "examples" / "outreach" / "activation.json"
CONNECTION = "acme-sales"
TARGET = 1.5


def pipeline() -> tuple[Pipeline, Spec]:
    spec = load_spec("outreach")
    return Pipeline(spec, load_activation(str(ACTIVATION), spec), redacted_auth_data(spec)), spec


def time_render(profiles: Path) -> tuple[float, int]:
    """Seconds to render every profile (the pipeline without delivery); the request count."""
    start = time.perf_counter()
    pipe, _spec = pipeline()
    requests = sum(1 for event in pipe.run(read_profiles(profiles)) if isinstance(event, Request))
    return time.perf_counter() - start, requests


def fill_ledger(profiles: Path) -> tuple[float, int]:
    """Stage every profile and mark it delivered, as a completed first push leaves the ledger."""
    start = time.perf_counter()
    pipe, spec = pipeline()
    ledger = Ledger(default_path(CONNECTION))
    try:
        sync = Sync(spec, pipe, ledger)
        for skipped in sync.stage(read_profiles(profiles)):
            raise SystemExit(f"a generated profile was skipped: {skipped}")
        identities = [identity for identity, _ref, _projection in ledger.pending_units()]
        for n in range(0, len(identities), 5_000):
            ledger.mark_in_flight(identities[n : n + 5_000])  # outcomes apply to in-flight rows
            ledger.delivered(identities[n : n + 5_000])
        delivered = ledger.status()["delivered"]
    finally:
        ledger.close()
    return time.perf_counter() - start, delivered


def time_push(fake: FakeOutreach, profiles: Path, count: int) -> float:
    """Seconds of `dest-engine push` (in this process) that finds every profile unchanged."""
    args = [
        "push",
        "outreach",
        "--activation",
        str(ACTIVATION),
        "--profiles",
        str(profiles),
        "--endpoint-override",
        f"https://api.outreach.io={fake.url}",
    ]
    start = time.perf_counter()
    result = CliRunner().invoke(main, args)
    elapsed = time.perf_counter() - start
    expected = f"read {count:,} profiles; 0 skipped; {count:,} unchanged; 0 staged"
    if result.exit_code != 0 or expected not in result.stderr:
        raise SystemExit(f"push did not find everything unchanged:\n{result.stderr}")
    if fake.requests:
        raise SystemExit(f"push sent {len(fake.requests)} requests; expected none")
    return elapsed


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dest-engine-bench-") as tmp, FakeOutreach() as fake:
        folder = Path(tmp)
        os.environ.update(
            DEST_ENGINE_CONFIG_DIR=str(folder / "config"),
            DEST_ENGINE_DATA_DIR=str(folder / "data"),
            DEST_ENGINE_CLIENT_ID=fake.client_id,
            DEST_ENGINE_CLIENT_SECRET=fake.client_secret,
        )
        os.chdir(ROOT)
        profiles = folder / "profiles.jsonl"
        start = time.perf_counter()
        generate(profiles, args.profiles)
        print(f"generated {args.profiles:,} profiles in {time.perf_counter() - start:.1f} s")
        login = CliRunner().invoke(
            main,
            ["auth", "import", "outreach", "--connection", CONNECTION],
            input=json.dumps(fake.issue_tokens()),
        )
        if login.exit_code != 0:
            raise SystemExit(login.stderr)
        seconds, delivered = fill_ledger(profiles)
        print(f"filled the ledger: {delivered:,} identities delivered in {seconds:.1f} s")

        renders, pushes = [], []
        for _ in range(args.repeat):
            seconds, requests = time_render(profiles)
            if requests != args.profiles:
                raise SystemExit(f"render made {requests:,} requests for {args.profiles:,}")
            renders.append(seconds)
            pushes.append(time_push(fake, profiles, args.profiles))
        render, push = min(renders), min(pushes)

    print(f"render: {render:6.2f} s  ({args.profiles / render:,.0f} profiles/s)")
    print(f"push:   {push:6.2f} s  ({args.profiles / push:,.0f} profiles/s, all unchanged)")
    verdict = "ok" if push / render <= TARGET else "over target"
    print(f"ratio push/render: {push / render:.2f} (target <= {TARGET}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
