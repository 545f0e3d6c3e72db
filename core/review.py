"""Review of generated rows: filters, keep / prune / restore / edit, undo, and atomic saves.

A ReviewSet holds every row of data/synthetic.jsonl in memory with a few precomputed fields, so a
filter over 50,000 rows takes milliseconds. Rows are replaced, never mutated, so a snapshot handed to
a writer thread stays consistent while the user keeps working. Saves are atomic (temporary file and
rename) and versioned: a slow older save can never overwrite a newer one.
"""
from __future__ import annotations

import re
import shlex
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from . import records
from .errors import StillroomError
from .fsio import atomic_write_jsonl

GLYPHS = {"kept": "✓", "pruned": "✗", "rejected": "⊘"}


@dataclass(frozen=True)
class Filter:
    """A parsed filter line: `status:kept label:billing reason:near-dup dup>0.8 len<200 "refund" card`;
    `round:2 group:billing->shipping` show the rows an improve round generated around a mistake group."""
    statuses: frozenset = frozenset()
    labels: frozenset = frozenset()
    reasons: frozenset = frozenset()
    words: tuple = ()
    numeric: tuple = ()          # (field, op, value) with field in dup, len
    edited: Optional[bool] = None
    rounds: frozenset = frozenset()       # improve rounds (meta.improve.round)
    groups: frozenset = frozenset()       # improve mistake groups (meta.improve.group)

    @property
    def empty(self) -> bool:
        return not (self.statuses or self.labels or self.reasons or self.words or self.numeric
                    or self.edited is not None or self.rounds or self.groups)


_NUMERIC = re.compile(r"^(dup|len)(<=|>=|<|>|=)([0-9.]+)$")


def parse_filter(text: str) -> Filter:
    """Parse a filter line. Unknown `key:value` terms are searched as text; raises StillroomError on
    a malformed number or an unterminated quote."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise StillroomError(f"filter {text!r}: unterminated quote", "close the quote") from None
    statuses, labels, reasons, words, numeric = set(), set(), set(), [], []
    rounds, groups = set(), set()
    edited = None
    for token in tokens:
        match = _NUMERIC.match(token.lower())
        if match:
            name, op, value = match.groups()
            try:
                numeric.append((name, op, float(value)))
            except ValueError:
                raise StillroomError(f"filter term {token!r}: {value!r} is not a number") from None
            continue
        key, sep, value = token.partition(":")
        key = key.lower()
        if sep and value:
            if key == "status":
                statuses.update(v for v in value.lower().split(",") if v)
                continue
            if key == "label":
                labels.update(v for v in value.split(",") if v)
                continue
            if key == "reason":
                reasons.update(v for v in value.lower().split(",") if v)
                continue
            if key == "round":
                for v in (v for v in value.split(",") if v):
                    if not v.isdigit():
                        raise StillroomError(f"filter term {token!r}: {v!r} is not a round number")
                    rounds.add(int(v))
                continue
            if key == "group":
                groups.update(v for v in value.split(",") if v)
                continue
            if key == "is" and value.lower() == "edited":
                edited = True
                continue
        words.append(token.lower())
    unknown = statuses - set(records.STATUSES)
    if unknown:
        raise StillroomError(f"filter: unknown status {', '.join(sorted(unknown))}",
                             "use status:kept, status:pruned or status:rejected")
    return Filter(frozenset(statuses), frozenset(labels), frozenset(reasons), tuple(words),
                  tuple(numeric), edited, frozenset(rounds), frozenset(groups))


@dataclass
class Entry:
    """One row with the fields the table and the filters need, computed once."""
    row: dict
    label: str
    text: str            # user text
    length: int
    dup: float
    haystack: str        # lowercased user + answer text

    @classmethod
    def of(cls, row: dict) -> "Entry":
        text = records.user_text(row)
        answer = records.answer_text(row) if row["messages"][-1]["role"] == "assistant" else ""
        scores = row.get("scores") or {}
        try:
            dup = float(scores.get("dup", 0.0) or 0.0)
        except (TypeError, ValueError):
            dup = 0.0
        return cls(row, answer, text, len(text), dup, (text + "\n" + answer).lower())

    @property
    def status(self) -> str:
        return self.row.get("status", "kept")

    @property
    def reason(self) -> str:
        return self.row.get("reason") or ""

    @property
    def id(self) -> str:
        return str(self.row.get("id", ""))


def _compare(value: float, op: str, bound: float) -> bool:
    return {"<": value < bound, ">": value > bound, "<=": value <= bound, ">=": value >= bound,
            "=": abs(value - bound) < 1e-9}[op]


def matches(entry: Entry, flt: Filter) -> bool:
    if flt.statuses and entry.status not in flt.statuses:
        return False
    if flt.labels and entry.label not in flt.labels:
        return False
    if flt.reasons and entry.reason not in flt.reasons:
        return False
    if flt.edited is not None and bool((entry.row.get("meta") or {}).get("edited")) != flt.edited:
        return False
    if flt.rounds or flt.groups:
        improve = (entry.row.get("meta") or {}).get("improve") or {}
        if flt.rounds and improve.get("round") not in flt.rounds:
            return False
        if flt.groups and improve.get("group") not in flt.groups:
            return False
    for name, op, bound in flt.numeric:
        value = entry.dup if name == "dup" else entry.length
        if not _compare(value, op, bound):
            return False
    return all(word in entry.haystack for word in flt.words)


class ReviewError(StillroomError):
    """A review action that cannot apply to a row (e.g. keeping a reject that has no answer)."""


@dataclass
class Change:
    description: str
    before: dict = field(default_factory=dict)     # position -> Entry before the change


class ReviewSet:
    """All generated rows of a project, filterable, editable with undo, saved atomically."""

    def __init__(self, rows: Iterable[dict], save: Optional[Callable[[list], None]] = None):
        self.entries: list[Entry] = [Entry.of(r) for r in rows]
        self._ids = {e.id for e in self.entries}
        self._save = save
        self.undo_stack: list[Change] = []
        self.version = 0            # bumped on every change
        self.saved_version = 0
        self._write_lock = threading.Lock()
        self._written_version = 0

    @classmethod
    def load(cls, project) -> "ReviewSet":
        return cls(project.synthetic(), save=project.save_synthetic)

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------ reading
    def filter(self, flt: Filter | str = "") -> list[int]:
        """Positions of the rows the filter shows, in file order."""
        if isinstance(flt, str):
            flt = parse_filter(flt)
        if flt.empty:
            return list(range(len(self.entries)))
        return [i for i, e in enumerate(self.entries) if matches(e, flt)]

    def counts(self) -> Counter:
        return Counter(e.status for e in self.entries)

    def label_balance(self, status: str = "kept") -> Counter:
        return Counter(e.label for e in self.entries if e.status == status)

    def reasons(self) -> Counter:
        return Counter(e.reason for e in self.entries if e.status == "rejected")

    def add(self, row: dict) -> bool:
        """A row appended by generation while reviewing; ignored when its id is already here."""
        rid = str(row.get("id", ""))
        if rid and rid in self._ids:
            return False
        self.entries.append(Entry.of(row))
        self._ids.add(rid)
        return True

    # ------------------------------------------------------------ changing
    def _apply(self, description: str, positions: Iterable[int], change: Callable[[dict], Optional[dict]]
               ) -> int:
        before = {}
        for pos in positions:
            entry = self.entries[pos]
            new = change(entry.row)
            if new is None or new == entry.row:
                continue
            before[pos] = entry
            self.entries[pos] = Entry.of(new)
        if before:
            self.undo_stack.append(Change(description, before))
            del self.undo_stack[:-200]
            self.version += 1
        return len(before)

    def prune(self, positions: Iterable[int]) -> int:
        def change(row):
            if row.get("status") != "kept":
                return None
            return {**row, "status": "pruned"}
        return self._apply("prune", positions, change)

    def keep(self, positions: Iterable[int]) -> int:
        """Keep rows: pruned rows come back; a rejected row is promoted when it has an answer."""
        positions = list(positions)
        no_answer = [p for p in positions if self.entries[p].status == "rejected"
                     and self.entries[p].row["messages"][-1]["role"] != "assistant"]

        def change(row):
            status = row.get("status")
            if status == "kept":
                return None
            if status == "rejected":
                if row["messages"][-1]["role"] != "assistant":
                    return None
                meta = {**(row.get("meta") or {}), "rejected_reason": row.get("reason", "")}
                return {**row, "status": "kept", "reason": "", "meta": meta}
            return {**row, "status": "kept"}
        done = self._apply("keep", [p for p in positions if p not in set(no_answer)], change)
        if no_answer and not done:
            raise ReviewError(f"row {self.entries[no_answer[0]].id} was rejected before the teacher "
                              f"answered ({self.entries[no_answer[0]].reason}); there is no answer to keep",
                              "edit the row to write an answer, then keep it")
        return done

    def restore(self, positions: Iterable[int]) -> int:
        """Back to the status generation gave the row (kept, or rejected with its reason)."""
        def change(row):
            meta = dict(row.get("meta") or {})
            if "rejected_reason" in meta:
                reason = meta.pop("rejected_reason")
                return {**row, "status": "rejected", "reason": reason, "meta": meta}
            if row.get("status") == "pruned":
                return {**row, "status": "kept"}
            return None
        return self._apply("restore", positions, change)

    def edit(self, position: int, messages: list) -> int:
        """Replace a row's messages (validated); an edited reject with an answer becomes kept."""
        records.check_messages(messages, f"row {self.entries[position].id}")

        def change(row):
            meta = {**(row.get("meta") or {}), "edited": True}
            new = {**row, "messages": messages, "meta": meta}
            if row.get("status") == "rejected":
                meta["rejected_reason"] = row.get("reason", "")
                new.update(status="kept", reason="")
            return new
        return self._apply("edit", [position], change)

    def undo(self) -> Optional[str]:
        """Revert the last change; returns its description (None when there is nothing to undo)."""
        if not self.undo_stack:
            return None
        change = self.undo_stack.pop()
        for pos, entry in change.before.items():
            self.entries[pos] = entry
        self.version += 1
        return f"{change.description} of {len(change.before)} row(s)"

    # ------------------------------------------------------------ saving
    @property
    def dirty(self) -> bool:
        return self.version != self.saved_version

    def snapshot(self) -> tuple[int, list[dict]]:
        return self.version, [e.row for e in self.entries]

    def write(self, snapshot: tuple[int, list[dict]]) -> bool:
        """Write a snapshot atomically (safe from a worker thread). An older snapshot than one already
        written is skipped. Returns whether it wrote."""
        version, rows = snapshot
        with self._write_lock:
            if version < self._written_version:
                return False
            (self._save or _no_save)(rows)
            self._written_version = version
        self.saved_version = max(self.saved_version, version)
        return True

    def save(self) -> bool:
        return self.write(self.snapshot())


def _no_save(rows: list) -> None:
    raise StillroomError("this review set has no file to save to")


def save_rows(path, rows: list[dict]) -> None:
    atomic_write_jsonl(path, rows)
