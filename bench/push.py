"""Benchmark: sending with dest-engine against a plain httpx loop, in the same run.

    python bench/push.py [--prospects 3000] [--concurrency 8] [--rounds 3]

Starts the fake Outreach server (tests/fake_outreach.py) in a child process,
with the rate limit lifted, and seeds the prospects. Renders the Outreach
requests once with the engine (bundled spec, example activation), then times,
alternating runs and keeping each one's best:

- baseline: a plain loop sending those same requests (same method, URL,
  headers with the bearer token, body) from a ThreadPoolExecutor with the
  same number of workers, over one httpx.Client;
- delivery: `engine.delivery.Delivery` sending the same requests (rate
  limiter, token manager, error translation, outcomes);
- push: the whole `dest-engine push --full` (read the profiles, map, stage in a
  fresh ledger, render, deliver, record), run in this process.

Prints requests per second and each engine figure's ratio to the baseline
(these machines are noisy: the ratio is the figure; target >= 0.70).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_outreach import FakeOutreach  # type: ignore[import-not-found]  # noqa: E402

from engine.activation import load_activation  # noqa: E402
from engine.auth import OAuthClient, TokenManager  # noqa: E402
from engine.cli import main as cli  # noqa: E402
from engine.credentials import Credentials, CredentialStore  # noqa: E402
from engine.delivery import Delivery, DeliveryOptions  # noqa: E402
from engine.endpoints import Endpoints  # noqa: E402
from engine.pipeline import Pipeline, redacted_auth_data  # noqa: E402
from engine.profiles import read_profiles  # noqa: E402
from engine.ratelimit import RateLimiter  # noqa: E402
from engine.spec import load_spec  # noqa: E402
from engine.templating import Request  # noqa: E402

ACTIVATION = ROOT / "examples" / "outreach" / "activation.json"
AUDIENCES = ["8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"]
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
FIRST_ID = 100_001


def serve(conn: Connection, prospects: int) -> None:
    """The child process: a fake Outreach with the prospects; answers commands until "stop"."""
    fake = FakeOutreach(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, rate_limit=10**9, token_lifetime=86_400
    ).start()
    for n in range(prospects):
        fake.add_prospect(FIRST_ID + n)
    conn.send((fake.url, fake.issue_tokens()))
    while True:
        command = conn.recv()
        if command == "stop":
            break
        with fake.lock:  # "count": API requests answered since the last count (and forget them)
            answered = sum(r["path"].startswith("/api/") for r in fake.requests)
            fake.requests.clear()
            fake.errors.clear()
        conn.send(answered)
    fake.stop()
    conn.send("stopped")


def generate(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            membership = {
                a: {"status": rng.choice(["realized", "exited"])}
                for a in AUDIENCES
                if rng.random() < 0.7
            } or {AUDIENCES[0]: {"status": "realized"}}
            profile = {
                "identityMap": {"Oid": [{"id": str(FIRST_ID + n)}]},
                "person": {"name": {"firstName": f"First{n}", "lastName": f"Last{n}"}},
                "segmentMembership": {"ups": membership},
            }
            out.write(json.dumps(profile) + "\n")


def render(path: Path) -> list[Request]:
    spec = load_spec("outreach")
    pipeline = Pipeline(spec, load_activation(ACTIVATION, spec), redacted_auth_data(spec))
    return [e for e in pipeline.run(read_profiles(str(path))) if isinstance(e, Request)]


def baseline(requests: list[Request], token: str, endpoints: Endpoints, workers: int) -> int:
    """A plain httpx loop: the same requests, the same number of workers, one client."""
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(limits=limits, timeout=30) as http:

        def send(request: Request) -> int:
            headers = {**request.headers, "Authorization": f"Bearer {token}"}
            response = http.request(
                request.method,
                endpoints.apply(request.url),
                headers=headers,
                content=request.body.encode(),
            )
            return response.status_code

        with ThreadPoolExecutor(max_workers=workers) as pool:
            statuses = Counter(pool.map(send, requests))
    return statuses[200]


def delivery(
    requests: list[Request], tokens: dict[str, Any], endpoints: Endpoints, workers: int
) -> int:
    """engine.delivery.Delivery sending the same requests."""
    spec = load_spec("outreach")
    pipeline = Pipeline(spec, load_activation(ACTIVATION, spec), redacted_auth_data(spec))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with tempfile.TemporaryDirectory() as config, httpx.Client(limits=limits) as http:
        store = CredentialStore(Path(config))
        credentials = Credentials(
            "bench", "outreach", "OAUTH2", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ).with_tokens(tokens, {}, time.time())
        oauth = OAuthClient(spec, CLIENT_ID, CLIENT_SECRET, http, endpoints)
        sender = Delivery(
            pipeline.templates,
            TokenManager(spec, store, credentials, oauth),
            RateLimiter(spec.data.get("rateLimit")),
            http,
            endpoints,
            DeliveryOptions(concurrency=workers),
        )
        outcomes = Counter(o.state for o in sender.run(requests))
    return outcomes["delivered"]


def push(profiles: Path, url: str, workers: int, tmp: Path, run: int) -> int:
    """The whole `dest-engine push --full`, in this process, with a fresh ledger."""
    result = CliRunner().invoke(
        cli,
        [
            "push",
            "outreach",
            "--activation",
            str(ACTIVATION),
            "--profiles",
            str(profiles),
            "--full",
            "--state",
            str(tmp / f"ledger-{run}.sqlite"),
            "--concurrency",
            str(workers),
            "--endpoint-override",
            f"https://api.outreach.io={url}",
        ],
    )
    if result.exit_code != 0:
        sys.exit(f"push failed (exit {result.exit_code}):\n{result.stderr}")
    delivered = result.stderr.split(" delivered,")[0].rsplit(" ", 1)[-1]
    return int(delivered.replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prospects", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, workers = args.prospects, args.concurrency

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child, n), daemon=True)
    server.start()
    url, tokens = parent.recv()
    endpoints = Endpoints([f"https://api.outreach.io={url}"])

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ.update(
            DEST_ENGINE_CONFIG_DIR=str(tmp / "config"),
            DEST_ENGINE_DATA_DIR=str(tmp / "data"),
            DEST_ENGINE_CLIENT_ID=CLIENT_ID,
            DEST_ENGINE_CLIENT_SECRET=CLIENT_SECRET,
        )
        login = CliRunner().invoke(
            cli,
            ["auth", "import", "outreach", "--connection", "acme-sales"],
            input=json.dumps(tokens),
        )
        if login.exit_code != 0:
            sys.exit(f"auth import failed:\n{login.stderr}")
        profiles = tmp / "profiles.jsonl"
        generate(profiles, n)
        requests = render(profiles)
        if len(requests) != n:
            sys.exit(f"rendered {len(requests)} requests for {n} profiles")

        runners = {
            "baseline": lambda run: baseline(requests, tokens["access_token"], endpoints, workers),
            "delivery": lambda run: delivery(requests, tokens, endpoints, workers),
            "push": lambda run: push(profiles, url, workers, tmp, run),
        }
        best = dict.fromkeys(runners, float("inf"))
        runners["baseline"](-1)  # warm up: connections, caches, the server's threads
        parent.send("count")
        parent.recv()
        for run in range(args.rounds):
            for name, runner in runners.items():
                start = time.perf_counter()
                delivered = runner(run)
                seconds = time.perf_counter() - start
                parent.send("count")
                answered = parent.recv()
                if delivered != n or answered != n:
                    sys.exit(f"{name}: {delivered} delivered, {answered} answered; expected {n}")
                best[name] = min(best[name], seconds)

    parent.send("stop")
    parent.recv()
    server.join(timeout=10)

    rate = {name: n / seconds for name, seconds in best.items()}
    print(
        f"requests: {n:,} PATCH to the fake Outreach (child process), {workers} workers,"
        f" best of {args.rounds} alternating rounds"
    )
    print(f"baseline (plain httpx loop):        {rate['baseline']:>8,.0f} requests/s")
    print(f"engine.delivery.Delivery:           {rate['delivery']:>8,.0f} requests/s")
    print(f"dest-engine push --full (end to end): {rate['push']:>6,.0f} requests/s")
    print(f"ratio Delivery/baseline: {rate['delivery'] / rate['baseline']:.2f} (target >= 0.70)")
    print(f"ratio push/baseline:     {rate['push'] / rate['baseline']:.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
