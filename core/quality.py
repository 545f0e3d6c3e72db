"""Validation and de-duplication of generated candidates.

Near-duplicates are found with character 3-gram Jaccard similarity. An index (MinHash LSH from
datasketch) proposes candidates so each new row costs about the same at row 20,000 as at row 200;
every candidate is then checked with the exact Jaccard similarity, so the index only saves work.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from .config import ProjectConfig

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip()


def shingles(text: str, n: int = 3) -> frozenset:
    text = normalize(text)
    if len(text) <= n:
        return frozenset([text]) if text else frozenset()
    return frozenset(text[i:i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def similarity(a: str, b: str) -> float:
    return jaccard(shingles(a), shingles(b))


@dataclass(frozen=True)
class Match:
    key: str
    score: float


class NearDupIndex:
    """Exact and near-duplicate lookup over a growing set of texts."""

    def __init__(self, threshold: float = 0.7, num_perm: int = 128):
        from datasketch import MinHashLSH
        self.threshold = threshold
        self.num_perm = num_perm
        # The LSH threshold sits well below the real one, weighted against misses, so a true match is
        # missed with odds of about one in a million (0.7 → bands of 3 rows, 31 bands).
        self._lsh = MinHashLSH(threshold=max(0.1, threshold - 0.3), num_perm=num_perm, weights=(0.2, 0.8))
        self._sets: dict[str, frozenset] = {}
        self._exact: dict[str, str] = {}
        self._counter = 0

    def __len__(self) -> int:
        return len(self._sets)

    def _minhash(self, grams: frozenset):
        from datasketch import MinHash
        m = MinHash(num_perm=self.num_perm, seed=1)
        m.update_batch([g.encode("utf-8") for g in grams])
        return m

    def add(self, text: str, key: Optional[str] = None) -> str:
        self._counter += 1
        key = key if key is not None else f"#{self._counter}"
        if key in self._sets:
            key = f"{key}#{self._counter}"
        grams = shingles(text)
        self._exact.setdefault(_digest(text), key)
        self._sets[key] = grams
        if grams:
            self._lsh.insert(key, self._minhash(grams))
        return key

    def exact(self, text: str) -> Optional[str]:
        return self._exact.get(_digest(text))

    def nearest(self, text: str) -> Optional[Match]:
        """The most similar indexed text at or above the threshold, if any."""
        key = self.exact(text)
        if key is not None:
            return Match(key, 1.0)
        grams = shingles(text)
        if not grams or not self._sets:
            return None
        best = None
        for key in self._lsh.query(self._minhash(grams)):
            score = jaccard(grams, self._sets[key])
            if score >= self.threshold and (best is None or score > best.score):
                best = Match(key, score)
        return best

    def max_similarity(self, text: str) -> float:
        """Highest similarity among the index's candidates (0 if none is close): the row's dup score."""
        grams = shingles(text)
        if not grams or not self._sets:
            return 0.0
        return max((jaccard(grams, self._sets[k]) for k in self._lsh.query(self._minhash(grams))),
                   default=0.0)


def _digest(text: str) -> str:
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- answers

def parse_label(text: str, labels: Iterable[str]) -> Optional[str]:
    """The label a model's answer names: exact match first, then the first label at the start, then
    the only label mentioned anywhere. None when the answer names no label or several."""
    labels = list(labels)
    clean = text.strip().strip(".\"'`*").strip()
    lowered = {label.lower(): label for label in labels}
    if clean.lower() in lowered:
        return lowered[clean.lower()]
    first = re.split(r"[\s,.;:!\n]+", clean.lower(), maxsplit=1)[0] if clean else ""
    if first in lowered:
        return lowered[first]
    found = [label for label in labels if re.search(rf"\b{re.escape(label.lower())}\b", clean.lower())]
    return found[0] if len(found) == 1 else None


def parse_json_answer(text: str):
    """The JSON object an answer holds (allowing ``` fences around it); raises ValueError."""
    body = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.S)
    if fence:
        body = fence.group(1)
    return json.loads(body)


def schema_problem(value, schema: dict) -> Optional[str]:
    """None if `value` matches the JSON schema, else a short description of the first problem."""
    try:
        import jsonschema
    except ImportError:   # a minimal check: required keys and top-level type
        if schema.get("type") == "object" and not isinstance(value, dict):
            return "expected a JSON object"
        missing = [k for k in schema.get("required", []) if k not in value]
        return f"missing required field(s) {', '.join(missing)}" if missing else None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    path = "/".join(str(p) for p in error.absolute_path)
    return f"{path + ': ' if path else ''}{error.message}"


# ---------------------------------------------------------------- checks on a candidate
# (answers are checked by their task kind: core/tasks.py)

def check_input(text: str, config: ProjectConfig) -> Optional[str]:
    """A rejection reason for a new input, or None."""
    gen = config.generation
    if not text.strip():
        return "empty"
    if len(text) < gen.min_chars:
        return "too-short"
    if len(text) > gen.max_chars:
        return "too-long"
    if repetitive(text):
        return "repetitive"
    return None


def repetitive(text: str) -> bool:
    """True for degenerate loops ("the the the ...", a phrase repeated to the token limit)."""
    words = text.split()
    if len(words) < 12:
        return False
    distinct = len(set(words)) / len(words)
    if distinct < 0.3:
        return True
    from collections import Counter
    for size in range(1, 6):
        grams = Counter(" ".join(words[i:i + size]) for i in range(0, len(words) - size + 1))
        if grams and grams.most_common(1)[0][1] * size > 0.6 * len(words):
            return True
    return False
