"""Where destinations live: a path, `./destinations/NAME.json`, or the bundled ones."""

from __future__ import annotations

from pathlib import Path

from engine.findings import UnreadableInput

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_root() -> Path:
    """The folder holding the bundled destinations/, templates/ and examples/.

    In an installed wheel they sit in `engine/bundled/`; in a checkout, at its top.
    """
    inside = PACKAGE_DIR / "bundled"
    return inside if inside.is_dir() else PACKAGE_DIR.parent


def search_dirs() -> list[Path]:
    """Folders searched for `NAME.json`, first match wins."""
    return [Path.cwd() / "destinations", bundled_root() / "destinations"]


def find_spec(ref: str) -> Path:
    """A spec by path (anything with a slash or ending in .json) or by destination name."""
    if "/" in ref or "\\" in ref or ref.endswith(".json"):
        return Path(ref)
    for folder in search_dirs():
        candidate = folder / f"{ref}.json"
        if candidate.is_file():
            return candidate
    names = sorted(
        {p.stem for folder in search_dirs() if folder.is_dir() for p in folder.glob("*.json")}
    )
    known = f"; available: {', '.join(names)}" if names else ""
    raise UnreadableInput(
        f"no destination named {ref!r} in ./destinations or the bundled ones{known}"
    )


def example_path(destination: str, name: str) -> Path | None:
    """A bundled example file, e.g. example_path("outreach", "activation.json")."""
    for root in (Path.cwd(), bundled_root()):
        candidate = root / "examples" / destination / name
        if candidate.is_file():
            return candidate
    return None
