"""Human output of the backup commands: rich tables on a terminal, plain lines otherwise.

Pure functions from results to lines or renderables, plus :func:`progress` (a spinner
on a terminal, silence elsewhere) used as the engine's observer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def size(n: int | None) -> str:
    """Bytes as ``812 B``, ``4.2 KiB``, ``17.0 MiB``, ``1.3 GiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def age(ms: int | None, now_ms: int | None = None) -> str:
    """Time since ``ms`` (UTC ms): ``42 s``, ``5 min``, ``3.5 h``, ``12 d``."""
    if ms is None:
        return "-"
    seconds = max(0.0, ((now_ms or int(time.time() * 1000)) - ms) / 1000)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


class _Spinner:
    def __init__(self, status: Any) -> None:
        self._status = status

    def step(self, text: str) -> None:
        self._status.update(text)


class _Silent:
    def step(self, text: str) -> None:
        pass


@contextmanager
def progress(console: Any, enabled: bool) -> Iterator[Any]:
    """An observer with ``step(text)``: a rich spinner when ``enabled`` on a terminal, else silent."""
    if enabled and console.is_terminal:
        with console.status("starting") as status:
            yield _Spinner(status)
    else:
        yield _Silent()


def _line(console: Any, text: str) -> None:
    """One line, never wrapped (cron logs and pipes keep whole lines)."""
    console.print(text, soft_wrap=True, highlight=False)


def _table(console: Any, title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; tab-free plain lines (``col=value``) for cron and pipes."""
    if console.is_terminal:
        from rich.table import Table

        table = Table(title=title)
        for col in columns:
            table.add_column(col, overflow="fold")  # archive names and paths stay whole
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    for row in rows:
        _line(console, "  ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True)))


def backup(console: Any, result: Any) -> None:
    """``sigmax backup``: where the archive went, then one row per member."""
    doc = result.to_dict()
    state = "verified" if doc["verified"] else "NOT verified"
    _line(console, f"backup {doc['archive']} ({size(doc['size_bytes'])}, sha256 {doc['sha256'][:16]}, {state})")
    rows = [[m["kind"], m.get("path") or m["name"], size(m["size"]), _counts(m.get("counts"))] for m in doc["members"]]
    _table(console, "members", ["kind", "item", "size", "counts"], rows)
    for skip in doc["skipped"]:
        _line(console, f"skipped {skip['kind']}: {skip['reason']}")
    if not doc["recorded"]:
        _line(console, "note: not recorded in the ledger's backups table (no ledger reachable)")


def _counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return ""
    if "keys" in counts:
        return f"{counts['keys']} keys"
    return f"{sum(counts.values())} rows in {len(counts)} tables"


def listing(console: Any, items: list[Any], directory: Any) -> None:
    """``backup list``: tag, age, size, verified, members; invalid files with their reason."""
    if not items:
        _line(console, f"no backups in {directory}")
        return
    now = int(time.time() * 1000)
    rows = []
    for item in items:
        if item.valid:
            verified = f"{age(item.verified_ms, now)} ago" if item.verified_ms else "no"
            rows.append([item.path.name, item.tag or "-", age(item.created_ms, now), size(item.size_bytes),
                         verified, ",".join(item.kinds or [])])
        else:
            rows.append([item.path.name, "-", "-", size(item.size_bytes), "INVALID", item.error or ""])
    _table(console, f"backups in {directory}", ["archive", "tag", "age", "size", "verified", "members"], rows)


def verified(console: Any, report: Any) -> None:
    """``backup verify``: the verdict, then each member's checks."""
    doc = report.to_dict()
    _line(console, f"ok: {doc['archive']} (sha256 {doc['sha256'][:16]}, {size(doc['size_bytes'])})")
    rows = [[kind, ", ".join(f"{k} {v}" for k, v in detail.items())] for kind, detail in doc["members"].items()]
    _table(console, "checks", ["member", "result"], rows)


def pruned(console: Any, result: Any) -> None:
    """``backup prune``: kept with reasons, removed (or would be), invalid files left alone."""
    verb = "would remove" if result.dry_run else "removed"
    for name, reasons in result.keep.items():
        _line(console, f"keep {name} ({', '.join(reasons)})")
    for name in result.remove:
        _line(console, f"{verb} {name}")
    for name in result.invalid:
        _line(console, f"left alone (not a valid archive) {name}")
    _line(console, f"{verb} {len(result.remove)} archive(s), {size(result.freed_bytes)}")


def restored(console: Any, result: Any) -> None:
    """``sigmax restore``: the plan per member; then what was done, or what blocks it."""
    doc = result.to_dict()
    head = "dry run: would restore" if doc["dry_run"] else "restored"
    _line(console, f"{head} {', '.join(doc['members'])} from {doc['archive']}")
    rows = []
    for plan in doc["plans"]:
        summary = ", ".join(f"{n} {a}" for a, n in sorted(plan["summary"].items())) or "nothing"
        rows.append([plan["kind"], plan["target"], summary])
        if plan["kind"] == "ledger":
            for change in plan["changes"]:
                rows.append([plan["kind"], f"table {change['item']}",
                             f"{change['action']}: {change['before']} -> {change['after']} rows"])
    _table(console, "plan", ["member", "item", "changes"], rows)
    for plan in doc["plans"]:
        for note in plan["notes"]:
            _line(console, f"note ({plan['kind']}): {note}")
    if doc["dry_run"]:
        for blocker in doc["blockers"]:
            _line(console, f"a restore now would be refused: {blocker} (or pass --force)")
        return
    if doc["forced"]:
        _line(console, "forced past: " + "; ".join(doc["blockers"]))
    _line(console, f"safety backup of the state before: {doc['safety_backup'] or 'none (nothing to save)'}")
