"""Ledger: what each identity last received, what is still to send, and what was rejected.

One SQLite file per connection (WAL mode). `push` first *stages* every
profile (one row per identity, the newest update wins, unchanged ones are
dropped), then sends what is staged, recording each outcome as it arrives.
A crash loses nothing: staged rows stay until delivered, and rows marked
`in_flight` say which requests may have been sent twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from engine.templating import Map

DATA_ENV = "DEST_ENGINE_DATA_DIR"
IN_FLIGHT = "state = 'in_flight'"
SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    identity TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    projection TEXT NOT NULL,
    delivered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    identity TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    projection TEXT NOT NULL,
    ref TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'waiting',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_seq ON pending (seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    identity TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    projection TEXT NOT NULL,
    ref TEXT NOT NULL,
    request TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    rule TEXT,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_path(connection: str) -> Path:
    """$DEST_ENGINE_DATA_DIR/ledgers/CONNECTION.sqlite (default: the user data folder)."""
    base = os.environ.get(DATA_ENV) or platformdirs.user_data_dir("dest-engine")
    return Path(base) / "ledgers" / f"{connection}.sqlite"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Unit:
    """One identity's target profile, as staged: what its request will carry."""

    identity: str
    ref: str
    projection: str  # canonical JSON of the target profile entry
    hash: str

    @classmethod
    def of(cls, identity: str, ref: str, profile: Map, keep_times: bool) -> Unit:
        """A unit for a profile entry; qualification times count only if a template reads them."""
        data: Any = profile
        if not keep_times:
            data = _without_times(profile)
        text = canonical(data)
        return cls(identity, ref, text, hashlib.sha256(text.encode()).hexdigest()[:32])


def _without_times(profile: Map) -> dict[str, Any]:
    segments = {
        ns: {
            aud: {k: v for k, v in m.items() if k != "lastQualificationTime"}
            for aud, m in a.items()
        }
        for ns, a in profile.get("segmentMembership", {}).items()
    }
    return {**profile, "segmentMembership": segments}


@dataclass(frozen=True)
class Staged:
    """Counts of one staging pass."""

    staged: int
    unchanged: int


class Ledger:
    """The SQLite ledger of one connection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction: all of it lands, or none. Inside `transaction()`, part of that one."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group several ledger writes into one transaction."""
        return self._tx()

    # --- staging ------------------------------------------------------------

    def stage(self, units: Iterable[Unit], full: bool = False, chunk: int = 500) -> Staged:
        """Record what is to be sent: the newest state of each identity that changed."""
        staged = unchanged = 0
        seq = self._next_seq()
        batch: list[Unit] = []
        for unit in units:
            batch.append(unit)
            if len(batch) >= chunk:
                s, u = self._stage_chunk(batch, seq, full)
                staged, unchanged, seq, batch = staged + s, unchanged + u, seq + len(batch), []
        if batch:
            s, u = self._stage_chunk(batch, seq, full)
            staged, unchanged = staged + s, unchanged + u
        return Staged(staged, unchanged)

    def _stage_chunk(self, units: list[Unit], seq: int, full: bool) -> tuple[int, int]:
        newest = {unit.identity: (offset, unit) for offset, unit in enumerate(units)}
        identities = list(newest)
        delivered = {} if full else self._delivered_hashes(identities)
        # A request in flight when a run died may have landed: resend the newest state.
        in_flight = self._in_flight(identities)
        now = time.time()
        changed, same = [], []
        for identity, (offset, unit) in newest.items():
            if delivered.get(identity) == unit.hash and identity not in in_flight:
                same.append((identity,))
            else:
                changed.append((identity, seq + offset, unit.hash, unit.projection, unit.ref, now))
        with self._tx():
            # The newest state is what was delivered: nothing to send, nothing rejected.
            self.db.executemany("DELETE FROM pending WHERE identity = ?", same)
            self.db.executemany("DELETE FROM dead_letters WHERE identity = ?", same)
            self.db.executemany(
                "INSERT INTO pending (identity, seq, hash, projection, ref, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (identity) DO UPDATE SET"
                " seq = excluded.seq, hash = excluded.hash, projection = excluded.projection,"
                " ref = excluded.ref, state = 'waiting', updated_at = excluded.updated_at",
                changed,
            )
        return len(changed), len(same)

    def _in_flight(self, identities: list[str]) -> set[str]:
        marks = ",".join("?" * len(identities))
        rows = self.db.execute(
            f"SELECT identity FROM pending WHERE state = 'in_flight' AND identity IN ({marks})",
            identities,
        )
        return {row[0] for row in rows}

    def _delivered_hashes(self, identities: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(identities))
        rows = self.db.execute(
            f"SELECT identity, hash FROM delivered WHERE identity IN ({marks})", identities
        )
        return dict(rows.fetchall())

    def _next_seq(self) -> int:
        (last,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM pending").fetchone()
        return int(last) + 1

    def delivered_projection(self, identity: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT projection FROM delivered WHERE identity = ?", (identity,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    # --- sending ------------------------------------------------------------

    def pending_units(
        self, include_failed: bool = True, chunk: int = 500
    ) -> Iterator[tuple[str, str, str]]:
        """(identity, ref, projection) of what is staged, oldest first, read in chunks."""
        after = 0
        states = "" if include_failed else " AND state != 'failed'"
        while True:
            rows = self.db.execute(
                "SELECT seq, identity, ref, projection FROM pending"
                f" WHERE seq > ?{states} ORDER BY seq LIMIT ?",
                (after, chunk),
            ).fetchall()
            if not rows:
                return
            for seq, identity, ref, projection in rows:
                after = seq
                yield identity, ref, projection

    def mark_in_flight(self, identities: Iterable[str]) -> None:
        with self._tx():
            self.db.executemany(
                "UPDATE pending SET state = 'in_flight', attempts = attempts + 1"
                " WHERE identity = ?",
                [(i,) for i in identities],
            )

    # Outcomes apply to rows still `in_flight`: a row staged again while its request
    # was out (--follow) holds newer data, which stays staged and is sent next.

    def delivered(self, identities: Iterable[str]) -> None:
        """These identities were delivered: they leave pending and the dead letters."""
        rows = [(i,) for i in identities]
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO delivered SELECT identity, hash, projection, ?"
                f" FROM pending WHERE identity = ? AND {IN_FLIGHT}",
                [(time.time(), i) for (i,) in rows],
            )
            self.db.executemany(
                "DELETE FROM dead_letters WHERE identity = ?1 AND EXISTS"
                f" (SELECT 1 FROM pending WHERE identity = ?1 AND {IN_FLIGHT})",
                rows,
            )
            self.db.executemany(f"DELETE FROM pending WHERE identity = ? AND {IN_FLIGHT}", rows)

    def rejected(self, identities: Iterable[str], letter: dict[str, Any]) -> None:
        """Requests carrying these identities were rejected: keep them as dead letters."""
        values = (
            canonical(letter["request"]),
            letter.get("status"),
            letter.get("response"),
            letter.get("rule"),
            letter["message"],
            letter.get("attempts", 0),
            time.time(),
        )
        rows = [(i,) for i in identities]
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO dead_letters SELECT identity, hash, projection, ref,"
                f" ?, ?, ?, ?, ?, ?, ? FROM pending WHERE identity = ? AND {IN_FLIGHT}",
                [(*values, i) for (i,) in rows],
            )
            self.db.executemany(f"DELETE FROM pending WHERE identity = ? AND {IN_FLIGHT}", rows)

    def unsent(self, identities: Iterable[str], error: str | None = None) -> None:
        """Requests not delivered this run (failed or never sent): they stay staged for the next."""
        state = "failed" if error else "waiting"
        with self._tx():
            self.db.executemany(
                "UPDATE pending SET state = ?, last_error = COALESCE(?, last_error)"
                f" WHERE identity = ? AND {IN_FLIGHT}",
                [(state, error, i) for i in identities],
            )

    # --- dead letters -------------------------------------------------------

    def dead_letters(self, rule: str | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT identity, ref, rule, message, status, attempts, at, request, response"
            " FROM dead_letters"
        )
        params: tuple[Any, ...] = ()
        if rule:
            query, params = query + " WHERE rule = ?", (rule,)
        rows = self.db.execute(query + " ORDER BY at, identity", params).fetchall()
        keys = (
            "identity",
            "profile",
            "rule",
            "message",
            "status",
            "attempts",
            "at",
            "request",
            "response",
        )
        letters = [dict(zip(keys, row, strict=True)) for row in rows]
        for letter in letters:
            letter["request"] = json.loads(letter["request"])
        return letters

    def requeue(self, rule: str | None = None) -> int:
        """Move dead letters (of one rule, or all) back to pending."""
        where, params = (" WHERE rule = ?", (rule,)) if rule else ("", ())
        seq = self._next_seq()
        now = time.time()
        with self._tx():
            rows = self.db.execute(
                f"SELECT identity, hash, projection, ref FROM dead_letters{where} ORDER BY at",
                params,
            ).fetchall()
            self.db.executemany(  # a newer staged state of the identity wins over its dead letter
                "INSERT INTO pending (identity, seq, hash, projection, ref, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (identity) DO NOTHING",
                [(i, seq + n, h, p, r, now) for n, (i, h, p, r) in enumerate(rows)],
            )
            self.db.execute(f"DELETE FROM dead_letters{where}", params)
        return len(rows)

    # --- runs and status ----------------------------------------------------

    def start_run(self, command: str) -> int:
        with self._tx():
            cursor = self.db.execute(
                "INSERT INTO runs (command, started_at) VALUES (?, ?)", (command, time.time())
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run: int, summary: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE runs SET finished_at = ?, summary = ? WHERE id = ?",
                (time.time(), canonical(summary), run),
            )

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, canonical(value)))

    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def status(self, runs: int = 5) -> dict[str, Any]:
        """What the ledger knows, for `dest-engine status`."""
        one = self.db.execute
        pending = dict(one("SELECT state, COUNT(*) FROM pending GROUP BY state").fetchall())
        failed = dict(
            one("SELECT COALESCE(rule, '-'), COUNT(*) FROM dead_letters GROUP BY rule").fetchall()
        )
        recent = one(
            "SELECT id, command, started_at, finished_at, summary FROM runs"
            " ORDER BY id DESC LIMIT ?",
            (runs,),
        )
        return {
            "delivered": one("SELECT COUNT(*) FROM delivered").fetchone()[0],
            "pending": pending,
            "deadLetters": failed,
            "runs": [
                {
                    "id": r[0],
                    "command": r[1],
                    "startedAt": r[2],
                    "finishedAt": r[3],
                    "summary": json.loads(r[4]) if r[4] else None,
                }
                for r in recent.fetchall()
            ],
            "rateLimit": self.meta("rateLimit"),
        }
