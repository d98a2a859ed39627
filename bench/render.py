"""Benchmark: the render pipeline against a hand-written baseline, in the same run.

    python bench/render.py [--profiles 100000] [--memory-profiles 1000000]

Generates synthetic Outreach profiles (JSONL), then times
- the baseline: plain Python doing the same transformation (parse the line,
  check the id, build the JSON:API dict, json.dumps),
- the Jinja floor: the baseline's work, but building the template input by
  hand and rendering the spec's URL and body templates (then checking the
  body is JSON) instead of json.dumps: what any engine that renders these
  templates must do at least, and
- the engine: dest-engine's full pipeline (mapping, aggregation, sandboxed
  templates, body check) with the bundled Outreach spec and example activation,
alternating runs and keeping each one's best. Prints profiles per second for
each and the ratios (these machines are noisy: the ratios are the figures).
Then renders `--memory-profiles` profiles in a child process and prints its
peak memory (resident set size) next to the baseline's.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from engine.activation import load_activation
from engine.catalog import example_path
from engine.pipeline import Pipeline, redacted_auth_data
from engine.profiles import read_profiles
from engine.spec import load_spec
from engine.templating import BODY_DECODER, Map, Request, render_source

AUDIENCES = {
    "8b1f2c3a-4d5e-4f60-8a71-92b3c4d5e6f7": 7,
    "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f": 12,
}
ID_PATTERN = re.compile(r"^[1-9][0-9]{0,17}$")


def generate(path: Path, count: int, seed: int = 7) -> None:
    """Write `count` synthetic profiles in the bundled example's shape."""
    rng = random.Random(seed)
    audiences = list(AUDIENCES)
    with path.open("w", encoding="utf-8") as out:
        for n in range(1, count + 1):
            membership = {
                a: {
                    "status": rng.choice(["realized", "exited"]),
                    "lastQualificationTime": "2026-11-20T09:15:00Z",
                }
                for a in audiences
                if rng.random() < 0.7
            } or {audiences[0]: {"status": "realized"}}
            profile = {
                "identityMap": {"Oid": [{"id": str(100000 + n)}]},
                "person": {"name": {"firstName": f"First{n}", "lastName": f"Last{n}"}},
                "segmentMembership": {"ups": membership},
            }
            out.write(json.dumps(profile) + "\n")


def by_hand(path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """Parse each line and check its id: (id, name attributes, activated audiences' statuses)."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            profile = json.loads(line)
            oid = profile["identityMap"]["Oid"][0]["id"]
            if not ID_PATTERN.match(oid):
                continue
            name = profile.get("person", {}).get("name", {})
            memberships = profile["segmentMembership"]["ups"].items()
            yield (
                oid,
                {k: name[k] for k in ("firstName", "lastName") if k in name},
                {a: m["status"] for a, m in memberships if a in AUDIENCES},
            )


def baseline(path: Path) -> int:
    """The same transformation by hand: one request per profile."""
    count = 0
    for oid, attributes, statuses in by_hand(path):
        for audience, status in statuses.items():
            attributes[f"custom{AUDIENCES[audience]}"] = status
        url = f"https://api.outreach.io/api/v2/prospects/{oid}"
        body = json.dumps({"data": {"type": "prospect", "id": int(oid), "attributes": attributes}})
        count += bool(url and body)
    return count


def outreach_pipeline() -> Pipeline:
    spec = load_spec("outreach")
    activation_file = example_path("outreach", "activation.json")
    assert activation_file is not None
    return Pipeline(spec, load_activation(activation_file, spec), redacted_auth_data(spec))


def jinja_floor(path: Path) -> int:
    """The baseline with the spec's templates in place of json.dumps: one request per profile."""
    bound = outreach_pipeline().bound
    (url_source, url_template), (body_source, body_template) = (
        bound.templates.url,
        bound.templates.body,
    )
    count = 0
    for oid, attributes, statuses in by_hand(path):
        target = Map(
            identityMap=Map(OutreachId=[Map(id=oid)]),
            attributes=Map((k, Map(value=v)) for k, v in attributes.items()),
            segmentMembership=Map(ups=Map((a, Map(status=s)) for a, s in statuses.items())),
        )
        variables = dict(bound.variables, input=Map(profiles=[target], profile=target))
        url = render_source(url_source, url_template, variables)
        body = BODY_DECODER.decode(render_source(body_source, body_template, variables))
        count += bool(url and body)
    return count


def engine(path: Path) -> int:
    """dest-engine's pipeline: requests rendered."""
    pipeline = outreach_pipeline()
    return sum(isinstance(event, Request) for event in pipeline.run(read_profiles(path)))


def timed(func: object, path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    count = func(path)  # type: ignore[operator]
    return time.perf_counter() - start, count


def peak_memory(mode: str, path: Path) -> int:
    """Peak RSS in MiB of a child process running `mode` over `path`."""
    code = (
        "import resource, sys; sys.path.insert(0, 'bench'); import render;"
        f" render.{mode}(__import__('pathlib').Path({str(path)!r}));"
        " print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--memory-profiles", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profiles.jsonl"
        generate(path, args.profiles)
        runs = {"baseline": baseline, "jinja floor": jinja_floor, "engine": engine}
        best = dict.fromkeys(runs, float("inf"))
        counts = {}
        for _ in range(args.rounds):
            for name, func in runs.items():
                seconds, counts[name] = timed(func, path)
                best[name] = min(best[name], seconds)
        if len(set(counts.values())) != 1:
            sys.exit(f"request counts differ: {counts}")
        rate = {name: args.profiles / seconds for name, seconds in best.items()}
        print(
            f"profiles: {args.profiles:,} ({counts['engine']:,} requests),"
            f" best of {args.rounds} rounds"
        )
        for name in runs:
            print(f"{name + ':':<12} {rate[name]:>10,.0f} profiles/s")
        print(f"ratio engine/baseline: {rate['engine'] / rate['baseline']:.2f} (target >= 0.50)")
        print(
            f"ratio jinja floor/baseline: {rate['jinja floor'] / rate['baseline']:.2f}"
            " (the most any engine rendering these templates can reach)"
        )
        print(f"ratio engine/jinja floor: {rate['engine'] / rate['jinja floor']:.2f}")
        if args.memory_profiles:
            big = Path(tmp) / "many.jsonl"
            generate(big, args.memory_profiles)
            base_mib, engine_mib = peak_memory("baseline", big), peak_memory("engine", big)
            print(
                f"peak memory for {args.memory_profiles:,} profiles: engine {engine_mib} MiB,"
                f" baseline {base_mib} MiB (target engine < 150 MB)"
            )


if __name__ == "__main__":
    main()
