"""The teacher's top-k log-probabilities for each answer token: stored beside the rows, read back for
token-level logit distillation, and lined up with the student's answer tokens.

On disk (both under the project's data/ folder):

* `teacher_topk.jsonl`: one line per answered row, keyed by the row id of data/synthetic.jsonl:
  `{"id", "vocab", "k", "tokens", "ids", "logprobs"}`. `tokens` is the answer as the teacher's token
  ids (n); `ids` the k most likely ids at each of those positions (n x k, little-endian int32) and
  `logprobs` their log-probabilities (n x k, little-endian float16), all base64. A row of 40 answer
  tokens at k = 8 takes about 3 KB. A sidecar rather than row meta: synthetic.jsonl stays one
  readable line per row that people page through, grep and diff, while these numbers are only ever
  read by training. A line is appended before its row is committed, so every committed row that was
  answered with log-probabilities has one; a line whose row was not kept is ignored, and a later line
  for the same id replaces an earlier one.
* `teacher_vocab.json`: the vocabulary of the teacher that wrote them (core/vocabulary.py); `vocab`
  on each line is its digest, so lines from another teacher are never used.

Training attaches a row's line as `row["teacher_topk"]` (by row id), which travels with the run's own rows
(runs/<id>/data.jsonl), so a resumed run reads the same targets.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .fsio import JsonlAppender, atomic_write_text
from .vocabulary import Vocabulary

TOPK_FILE = "teacher_topk.jsonl"
VOCAB_FILE = "teacher_vocab.json"


@dataclass(frozen=True)
class TopK:
    """One answer's targets: its token ids and, per token, the teacher's k best ids and log-probs."""
    tokens: list        # n token ids
    ids: list           # n lists of k ids
    logprobs: list      # n lists of k log-probabilities, best first

    @property
    def k(self) -> int:
        return len(self.ids[0]) if self.ids else 0


# ---------------------------------------------------------------- one record

def encode(row_id: str, topk: TopK, vocab_digest: str) -> dict:
    import numpy as np
    n, k = len(topk.tokens), topk.k
    ids = np.asarray(topk.ids, dtype="<i4").reshape(n, k)
    logprobs = np.asarray(topk.logprobs, dtype="<f2").reshape(n, k)
    return {"id": row_id, "vocab": vocab_digest, "k": k,
            "tokens": _b64(np.asarray(topk.tokens, dtype="<i4")), "ids": _b64(ids), "logprobs": _b64(logprobs)}


def decode(record: dict, where: str = TOPK_FILE) -> TopK:
    """A stored record back to lists (log-probabilities as float16 rounded them)."""
    import numpy as np
    try:
        k = int(record["k"])
        tokens = np.frombuffer(base64.b64decode(record["tokens"]), dtype="<i4")
        ids = np.frombuffer(base64.b64decode(record["ids"]), dtype="<i4")
        logprobs = np.frombuffer(base64.b64decode(record["logprobs"]), dtype="<f2")
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: not a teacher top-k record ({exc})") from None
    n = len(tokens)
    if k < 1 or ids.size != n * k or logprobs.size != n * k:
        raise DataError(f"{where}: teacher top-k record of {n} tokens has {ids.size} ids and "
                        f"{logprobs.size} log-probabilities; expected {n} x k={k}")
    return TopK(tokens.tolist(), ids.reshape(n, k).tolist(), logprobs.astype("float32").reshape(n, k).tolist())


def _b64(array) -> str:
    return base64.b64encode(array.tobytes()).decode("ascii")


# ---------------------------------------------------------------- the project's files

def topk_path(project) -> Path:
    return project.synthetic_path.parent / TOPK_FILE


def vocab_path(project) -> Path:
    return project.synthetic_path.parent / VOCAB_FILE


class TopKWriter:
    """Appends records, from generation's worker threads too (one flushed and fsynced line at a time)."""

    def __init__(self, project, vocabulary: Vocabulary):
        self.digest = vocabulary.digest
        self.path = topk_path(project)
        path = vocab_path(project)
        if _stored_digest(path) != self.digest:
            atomic_write_text(path, json.dumps(vocabulary.to_json(), ensure_ascii=False) + "\n")
        self._lock = threading.Lock()

    def write(self, row_id: str, topk: TopK) -> None:
        record = encode(row_id, topk, self.digest)
        with self._lock, JsonlAppender(self.path) as out:
            out.append(record)


class TopKRecorder:
    """Generation's side: checks once that the teacher can give targets over the student's
    vocabulary, then stores the targets of each answer the teacher gives."""

    def __init__(self, project, teacher, k: int, on_event=None):
        from .backends.base import ScoresAnswerTokens, supports
        from .errors import ConfigError
        from .events import Status
        from .vocabulary import check_shared_vocabulary, model_vocabulary
        if not supports(teacher, ScoresAnswerTokens):
            raise ConfigError(f"{project.config_path}: generation.teacher_logprobs = {k} needs a llama.cpp "
                              f"teacher (a GGUF); {teacher.name} cannot give its log-probabilities",
                              "set generation.teacher_logprobs = 0")
        vocabulary = teacher.vocabulary()
        student = model_vocabulary(project.config.student.model, project_dir=project.root)
        shared = check_shared_vocabulary(vocabulary, student, teacher_name=f"teacher {teacher.name}",
                                         student_name=f"student {project.config.student.model}")
        if on_event is not None:
            on_event(Status(f"{shared.describe()}; keeping the teacher's top {k} tokens per answer token"))
        self.teacher = teacher
        self.k = k
        self.writer = TopKWriter(project, vocabulary)

    def record(self, row_id: str, request, answer: str) -> None:
        """`request` is the prompts.Request the teacher answered."""
        context = list(request.messages) if request.mode == "chat" else request.prompt
        topk = self.teacher.answer_top_logprobs(context, answer, self.k)
        if topk.tokens:
            self.writer.write(row_id, topk)


def _stored_digest(path: Path) -> str | None:
    try:
        return json.loads(path.read_text("utf-8")).get("digest")
    except (OSError, ValueError, AttributeError):
        return None


def read_teacher_vocabulary(project) -> Vocabulary | None:
    path = vocab_path(project)
    if not path.exists():
        return None
    try:
        return Vocabulary.from_json(json.loads(path.read_text("utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable teacher vocabulary ({exc})",
                        "delete it and the teacher_topk.jsonl beside it, then generate again") from None


def read_records(project) -> dict[str, dict]:
    """Every stored record by row id (the last line for an id wins; a torn last line is skipped)."""
    path = topk_path(project)
    if not path.exists():
        return {}
    lines = path.read_text("utf-8").splitlines()
    out: dict[str, dict] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break                       # a kill mid-append: that row was never committed
            raise DataError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise DataError(f"{path}:{number}: expected an object with a row \"id\"")
        out[record["id"]] = record
    return out


def attach(project, rows: list[dict], vocabulary: Vocabulary) -> int:
    """Give each training row whose id has a record from this vocabulary's teacher that record, as
    row["teacher_topk"] (an answer edited in review keeps its id, and is caught when its tokens are
    lined up). Returns how many rows got one."""
    records = read_records(project)
    attached = 0
    for row in rows:
        record = records.get(row.get("id"))
        if record is not None and record.get("vocab") == vocabulary.digest:
            row["teacher_topk"] = {k: v for k, v in record.items() if k != "id"}
            attached += 1
    return attached


# ---------------------------------------------------------------- lining up with the student's tokens

def line_up(labels: list, record: dict, *, truncated: bool, ignore_index: int = -100
            ) -> tuple[list, list] | None:
    """The teacher's (ids, logprobs) for each of the student's answer tokens in `labels`, or None when
    the student's answer tokens do not start with the teacher's answer tokens (another tokenization, an
    edited answer). The teacher scored the answer's text only, so the tokens after it (the chat
    template's end-of-turn marker) get empty lists: cross-entropy alone. A row cut at max_length keeps
    the targets of the tokens it still has."""
    topk = decode(record)
    answer = [label for label in labels if label != ignore_index]
    n = len(topk.tokens)
    m = min(n, len(answer)) if truncated else n
    if m == 0 or len(answer) < m or answer[:m] != topk.tokens[:m]:
        return None
    empty = len(answer) - m
    return topk.ids[:m] + [[]] * empty, topk.logprobs[:m] + [[]] * empty
