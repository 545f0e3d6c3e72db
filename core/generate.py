"""Teacher generation: fill data/synthetic.jsonl until it holds N kept rows.

Each candidate is one appended, fsynced JSON line (kept or rejected, with its reason). A run killed
at any moment and started again repairs a torn last line and continues to exactly N kept rows:
row ids and the random choices of row i depend only on the seed and i, so nothing repeats.

With `teacher.max_in_flight` = K > 1 (and a teacher that allows it: a server, several servers, or the
batched llama.cpp engine), K candidates are worked on at once by worker threads while the main thread
commits finished candidates strictly in index order: the final de-duplication check, the append and
the events all happen there, so the file stays append-only, ids stay gap-free and a resumed run
continues exactly as a sequential one would. A finished candidate waiting behind a slower, earlier
one does not hold a teacher slot: up to 2K candidates may be finished but not yet committed, so the
teacher keeps K requests busy. A candidate's label is chosen from the rows committed at least that
window before it and the labels intended since, never from timing, so for a given K and seed the rows
are always the same (and without labels the same for any K).
"""
from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

from . import records
from .backends.base import (SamplingParams, ScoresChatContinuations, TextModel, choose_mode, concurrency_limit,
                            concurrency_note, supports)
from .errors import Cancelled, StillroomError
from .events import (CandidateStarted, EventSink, ExampleAccepted, ExampleRejected, GenerationFinished,
                     GenerationProgress, Status, TokenStreamed, ignore)
from .fsio import JsonlAppender, repair_torn_tail
from .labeling import LABEL_TOP_LOGPROBS, chat_label_distribution, logprob_label_distribution
from .project import Project, text_id
from .prompts import Prompter, ask, clean_input
from .quality import NearDupIndex, check_input
from .tasks import task_kind
from .teacher_topk import TopKRecorder


@dataclass
class GenerationResult:
    kept: int
    rejected: int
    target: int
    elapsed: float
    cancelled: bool
    rejected_by_reason: dict = field(default_factory=dict)
    teacher_tokens: int = 0
    teacher_seconds: float = 0.0


def usable_seeds(project: Project) -> list[dict]:
    """The seeds the teacher learns from, or a clear error when they cannot teach the task."""
    seeds = project.seeds()
    task_kind(project.config.task).check_seeds(seeds, project.seeds_path)
    return seeds


def check_ready(project: Project, target: int) -> None:
    """Everything that can be checked before the (slow) teacher loads: count, example files, model."""
    from .models import resolve
    if target < 1:
        raise StillroomError(f"--count must be at least 1, got {target}")
    usable_seeds(project)
    project.tests()
    resolve(project.config.teacher.model, project_dir=project.root)


class Generator:
    """Holds what one generation run needs: project, teacher, prompter, dedup index, counters."""

    def __init__(self, project: Project, teacher: TextModel, *, on_event: EventSink = ignore,
                 cancel: Optional[threading.Event] = None):
        self.project = project
        self.config = project.config
        self.teacher = teacher
        self._event_lock = threading.Lock()
        self._sink = on_event
        self.cancel = cancel or threading.Event()
        self._lock = threading.Lock()        # counters and the dedup index, shared with worker threads
        self.mode = choose_mode(teacher, self.config.teacher.mode)
        self.kind = task_kind(self.config.task)
        self.prompter = Prompter(self.config.task, self.mode)
        self.seeds = usable_seeds(project)
        self.teacher_tokens = 0
        self.teacher_seconds = 0.0          # wall time with a teacher request running
        self._busy = 0
        self._busy_since = 0.0
        limit = concurrency_limit(teacher)
        # teacher.max_in_flight = 0 (auto): as many as the teacher can take at once.
        self.concurrency = max(1, int(self.config.teacher.max_in_flight) or int(limit or 1))
        if limit:
            self.concurrency = max(1, min(self.concurrency, int(limit)))
        self.in_flight_limit = self.concurrency    # K, or fewer once the teacher lowers its bound
        self.note = ""                           # why it did, for the progress line
        self._relabel_room: dict = {}         # index -> the labels a relabelled candidate may take
        self.scorer = self.kind.label_scorer(teacher, self.mode, self.prompter, self.seeds,
                                             self.config.generation.label_shots, self.config.task.system_prompt)
        # generation.teacher_logprobs: the targets of token-level distillation, beside the rows.
        self.topk = (TopKRecorder(project, teacher, self.config.generation.teacher_logprobs, self.on_event)
                     if self.config.generation.teacher_logprobs else None)

    def on_event(self, event) -> None:
        with self._event_lock:
            self._sink(event)

    # ------------------------------------------------------------------ setup
    def _index(self, rows: list[dict]) -> NearDupIndex:
        self.on_event(Status("indexing seeds, test rows and earlier rows"))
        index = NearDupIndex(self.config.generation.near_dup_threshold)
        for row in self.seeds:
            index.add(records.user_text(row), f"seed:{text_id(records.user_text(row))}")
        for row in self.project.tests():
            index.add(records.user_text(row), f"test:{text_id(records.user_text(row))}")
        for row in rows:
            if row.get("status") in ("kept", "pruned"):
                index.add(records.user_text(row), row.get("id"))
        return index

    def _params(self, temperature: float, max_tokens: int, seed: int) -> SamplingParams:
        return SamplingParams(temperature=temperature, top_p=self.config.generation.top_p,
                              max_tokens=max_tokens, seed=seed)

    def _stream(self, purpose: str, index_no: int):
        if self.concurrency > 1:
            # K candidates interleave: each candidate's text is shown whole, when it is done.
            return None

        def forward(piece: str) -> None:
            self.on_event(TokenStreamed(piece, "teacher", purpose, index_no))
        return forward

    @contextmanager
    def _teacher_busy(self):
        """Counts the wall time during which at least one teacher request is running into
        teacher_seconds (K overlapping requests count once, so tokens/teacher_seconds is a rate)."""
        with self._lock:
            if self._busy == 0:
                self._busy_since = time.perf_counter()
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                if self._busy == 0:
                    self.teacher_seconds += time.perf_counter() - self._busy_since

    def _ask(self, request, params, purpose, index_no):
        with self._teacher_busy():
            completion = ask(self.teacher, request, params, on_token=self._stream(purpose, index_no),
                             cancel=self.cancel)
        with self._lock:
            self.teacher_tokens += completion.completion_tokens
        if completion.finish_reason == "cancelled":
            raise Cancelled("generation stopped")
        if self.concurrency > 1 and completion.text:
            self.on_event(TokenStreamed(completion.text, "teacher", purpose, index_no,
                                        completion.completion_tokens))
        return completion

    # ------------------------------------------------------------------ one candidate
    def _produce(self, index_no: int, label: Optional[str], dedup: NearDupIndex) -> Optional[dict]:
        """candidate(), or None when it was cancelled midway."""
        try:
            return self.candidate(index_no, label, dedup, announce=False)
        except Cancelled:
            return None

    def candidate(self, index_no: int, label: Optional[str], dedup: NearDupIndex,
                  announce: bool = True) -> dict:
        """Write, check and answer candidate number `index_no`; returns the row (kept or rejected)."""
        gen = self.config.generation
        task = self.config.task
        room = self._relabel_room.pop(index_no, None)
        rng = random.Random(f"{gen.seed}:{index_no}")
        group = index_no // gen.shot_group
        # Labels take turns, so a label's next shot_group candidates span that many times more indices.
        input_group = index_no // (gen.shot_group * len(task.labels)) if label else group
        shots = self._input_shots(input_group, rng, label)
        topic = gen.topics[input_group % len(gen.topics)] if gen.topics else ""
        sample_seed = (gen.seed * 1_000_003 + index_no) % (2 ** 31)
        if announce:
            self.on_event(CandidateStarted(index_no, label))

        request = self.prompter.new_input(shots, label or "", topic)
        written = self._ask(request, self._params(gen.temperature, gen.max_input_tokens, sample_seed),
                            "input", index_no)
        text = clean_input(written.text, task.input_name)
        meta = {"teacher": self.teacher.name, "mode": self.mode, "prompt_hash": request.digest,
                "seed_ids": [text_id(records.user_text(r)) for r in shots],
                "sampling": {"temperature": gen.temperature, "top_p": gen.top_p, "seed": sample_seed,
                             "label_temperature": gen.label_temperature},
                "time": round(time.time(), 3)}
        if label:
            meta["intended_label"] = label
        if topic:
            meta["topic"] = topic
        row = {"id": records.synthetic_id(index_no), "status": "kept", "reason": "", "scores": {}, "meta": meta}

        reason = check_input(text, self.config)
        if reason is None and written.finish_reason == "length":
            reason = "truncated"
        if reason is None:
            # Against the rows committed so far; re-checked at commit against any committed since.
            reason = self._dup_check(row, text, dedup)
        if reason is not None:
            return self._finish(row, text, "", reason)

        if self.scorer is not None:
            with self._teacher_busy():
                answer, probs = self.scorer.label(text)
            self.on_event(TokenStreamed(answer, "teacher", "answer", index_no, tokens=0))
            row["scores"]["label_probs"] = probs
            meta["teacher_label"] = answer
            meta["labelled_by"] = "calibrated-scoring"
            reason = "label-disagree" if self._rejects_disagreement() and label and answer != label else None
            reason = self._unbalancing(room, label, answer, reason)
            return self._finish(row, text, self._relabelled(meta, label, answer, reason), reason)

        request = self.prompter.answer(self._answer_shots(group), text, task.system_prompt)
        params = self._params(gen.label_temperature, gen.max_output_tokens, sample_seed + 1)
        if self.kind.label_set and not self._scores_chat(request):
            params = dataclasses.replace(params, top_logprobs=LABEL_TOP_LOGPROBS)
        answered = self._ask(request, params, "answer", index_no)
        reason, answer, notes = self.kind.check_teacher_answer(answered.text, answered.finish_reason, label,
                                                               self._rejects_disagreement())
        meta.update(notes)
        reason = self._unbalancing(room, label, answer, reason)
        if reason is None and self.kind.label_set:
            self._keep_label_distribution(row, request, answered)
        answer = self._relabelled(meta, label, answer, reason)
        if reason is None and self.topk is not None:
            with self._teacher_busy():
                self.topk.record(row["id"], request, answer)
        return self._finish(row, text, answer, reason)

    def _scores_chat(self, request) -> bool:
        return request.mode == "chat" and supports(self.teacher, ScoresChatContinuations)

    def _keep_label_distribution(self, row: dict, request, answered) -> None:
        """scores.label_probs for a sampled label: each label scored after the chat where the teacher
        can, else read from the answer's token log-probabilities where the server sent them."""
        if self._scores_chat(request):
            with self._teacher_busy():
                probs = chat_label_distribution(self.teacher, request.messages, self.kind.label_set)
            source = "chat-scoring"
        else:
            probs, source = logprob_label_distribution(answered.top_logprobs, self.kind.label_set), "logprobs"
        if probs:
            row["scores"]["label_probs"] = probs
            row["meta"]["label_probs_from"] = source

    @staticmethod
    def _unbalancing(room: Optional[set], intended: Optional[str], answer: str, reason: Optional[str]
                     ) -> Optional[str]:
        """relabel: a disagreeing candidate is kept only under a label the set needs as much as the one
        it was written for (tied for fewest when its label was chosen); under a label already ahead
        it is rejected, or a teacher that leans to one label would tilt the whole set towards it.
        `room`: those labels (None: no limit)."""
        if reason is None and intended and answer and answer != intended and room is not None \
                and answer not in room:
            return "label-disagree"
        return reason

    def _rejects_disagreement(self) -> bool:
        gen = self.config.generation
        return gen.agreement and gen.disagreement == "reject"

    @staticmethod
    def _relabelled(meta: dict, intended: Optional[str], answer: str, reason: Optional[str]) -> str:
        """The row's answer: the teacher's label. A kept row written for another label says so in its
        meta (intended_label stays); the label window then counts it under the teacher's label."""
        if reason is None and intended and answer and answer != intended:
            meta["relabelled"] = True
        return answer

    def _dup_check(self, row: dict, text: str, dedup: NearDupIndex) -> Optional[str]:
        with self._lock:
            match = dedup.nearest(text)
            score = match.score if match else dedup.max_similarity(text)
        row["scores"]["dup"] = round(score, 3)
        row["meta"].pop("dup_of", None)
        if match is None:
            return None
        row["meta"]["dup_of"] = match.key
        return ("test-overlap" if match.key.startswith("test:")
                else "exact-dup" if match.score >= 0.999 else "near-dup")

    def _recheck(self, row: dict, dedup: NearDupIndex) -> dict:
        """At commit: the final duplicate check, against every row committed before this one."""
        if self.concurrency == 1 or "dup" not in row["scores"]:
            return row       # sequential, or rejected before the check: nothing can have changed
        reason = self._dup_check(row, records.user_text(row), dedup)
        if reason is None:
            return row
        # A duplicate: the row looks exactly as if the answer had never been asked for.
        row["messages"] = [m for m in row["messages"] if m["role"] != "assistant"]
        row["scores"] = {"dup": row["scores"]["dup"]}
        for key in ("teacher_label", "labelled_by"):
            row["meta"].pop(key, None)
        row["status"], row["reason"] = "rejected", reason
        return row

    def _answer_shots(self, group: int) -> list[dict]:
        """The worked examples shown with the inputs the teacher answers: one set per shot group, so a
        group's answer prompts differ only in the input (a prefix evaluated once), rotated between
        groups so no one example's quirks (or, for a base model, the label shown last) bias every
        answer; the task's kind may balance them (classification shows every label equally often)."""
        gen = self.config.generation
        rng = random.Random(f"{gen.seed}:answer-shots:{group}")
        return self.kind.answer_shots(self.seeds, rng, min(gen.few_shot, len(self.seeds)))

    def _input_shots(self, group: int, rng: random.Random, label: Optional[str]) -> list[dict]:
        """Few-shot examples for writing a new input; for a label, mostly that label's seeds, so the
        teacher stays on the label, plus a couple of others so it sees what the label is not.

        The candidates of one shot group (and label) share every shot but the last, in the same order,
        so their prompts share a long prefix that a batched teacher evaluates once; the last shot is
        the candidate's own, for variety.
        """
        gen = self.config.generation
        k = min(gen.few_shot, len(self.seeds))
        shared = random.Random(f"{gen.seed}:shots:{label or ''}:{group}")
        if not label:
            shots = shared.sample(self.seeds, k)
            pool = self.seeds
        else:
            same = [r for r in self.seeds if records.answer_text(r) == label]
            other = [r for r in self.seeds if records.answer_text(r) != label]
            n_same = min(len(same), max(1, (2 * k) // 3))
            shots = shared.sample(same, n_same) + shared.sample(other, min(len(other), k - n_same))
            shared.shuffle(shots)
            pool = same if records.answer_text(shots[-1]) == label else other
        # The candidate's own last shot: any seed of the same kind not already shown.
        choices = [r for r in pool if not any(r is s for s in shots[:-1])]
        shots[-1] = rng.choice(choices)
        return shots

    def _finish(self, row: dict, text: str, answer: str, reason: Optional[str]) -> dict:
        system = self.config.task.system_prompt
        row["messages"] = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}]
        if answer or reason is None:
            row["messages"].append({"role": "assistant", "content": answer})
        if reason is not None:
            row["status"], row["reason"] = "rejected", reason
        return row

    # ------------------------------------------------------------------ the scheduler
    def run(self, target: int) -> GenerationResult:
        """Commit candidates in index order until `target` rows are kept, the run is stopped, or the
        attempt budget is spent."""
        if target < 1:
            raise StillroomError(f"--count must be at least 1, got {target}")
        state = self._resume(target)
        self._report(state)
        with self._workers(state), JsonlAppender(self.project.synthetic_path) as out:
            self._schedule(state, out)
        return self._result(state)

    def _resume(self, target: int) -> _Run:
        """The run's state from the rows already written (a torn last line repaired first)."""
        path = self.project.synthetic_path
        repaired = repair_torn_tail(path)
        if repaired:
            self.on_event(Status(f"repaired a torn last line in {path.name} ({repaired} bytes)"))
        rows = self.project.synthetic()
        kept = [r for r in rows if r.get("status") == "kept"]
        window = 2 * self.concurrency if self.concurrency > 1 else 1
        return _Run(target=target, budget=target * self.config.generation.max_attempts_factor,
                    kept=len(kept),
                    rejected=Counter(r.get("reason") or "?" for r in rows if r.get("status") == "rejected"),
                    dedup=self._index(rows), next_index=_next_index(rows), window=window,
                    balance=_LabelWindow.from_rows(rows, window),
                    start=time.perf_counter())

    @contextmanager
    def _workers(self, state: _Run):
        """With K > 1, the worker threads that produce candidates; on the way out the candidates not
        committed are dropped if the run failed or was stopped, and every worker is joined."""
        if self.concurrency == 1:
            yield
            return
        state.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="stillroom-candidate")
        failed = True
        try:
            yield
            failed = False
        finally:
            if failed or state.cancelled:
                for _, work in state.in_flight:
                    work.cancel()
            state.pool.shutdown(wait=True)

    def _schedule(self, state: _Run, out: JsonlAppender) -> None:
        """Fill the window, then commit the next row in index order, until done or stopped."""
        while state.kept < state.target and not state.cancelled:
            self._fill_window(state)
            if not state.in_flight:
                self._stop_or_give_up(state)
            elif self._head_finished(state):
                self._commit_next(state, out)

    def _fill_window(self, state: _Run) -> None:
        """Start candidates up to K running (or the teacher's lowered bound) and the window, and no
        more than the acceptance rate so far says are needed."""
        limit = min(state.window, state.wanted())
        running = sum(1 for _, work in state.in_flight if state.pool is not None and not work.done())
        while (not self.cancel.is_set() and running < self._running_limit(state)
               and len(state.in_flight) < limit
               and state.attempts + len(state.in_flight) < state.budget):
            self._start_next(state)
            if state.pool is not None:
                running += 1

    def _running_limit(self, state: _Run) -> int:
        """K, or fewer once the teacher lowered its bound (a server that cuts concurrent streams
        short): said once, in the progress line and the run's log, and the run goes on. The window
        stays as it was, so the rows are the same ones."""
        limit = concurrency_limit(self.teacher) or self.concurrency
        if limit < self.in_flight_limit:
            self.in_flight_limit = max(1, limit)
            self.note = concurrency_note(self.teacher) or f"teacher requests in flight lowered to {limit}"
            self.on_event(Status(self.note))
            self._report(state)
        return self.in_flight_limit

    def _start_next(self, state: _Run) -> None:
        """Start candidate number state.next_index: in a worker with K > 1, else here and now."""
        index_no = state.next_index
        counts = state.balance.counts(index_no)
        label = self._choose_label(counts, index_no)
        if label:
            self._relabel_room[index_no] = {other for other in self.kind.label_set
                                            if counts.get(other, 0) <= counts.get(label, 0)}
        self.on_event(CandidateStarted(index_no, label))
        if state.pool is None:
            work = self._produce(index_no, label, state.dedup)
        else:
            work = state.pool.submit(self._produce, index_no, label, state.dedup)
        state.in_flight.append((index_no, work))
        state.balance.started(index_no, label)
        state.next_index += 1

    def _head_finished(self, state: _Run) -> bool:
        """Whether the earliest candidate is done; if not, waits until any candidate is (a finished
        one frees a slot for the next) and says False."""
        head = state.in_flight[0][1]
        if state.pool is None or head.done():
            return True
        wait([w for _, w in state.in_flight if not w.done()], return_when=FIRST_COMPLETED)
        return False

    def _commit_next(self, state: _Run, out: JsonlAppender) -> None:
        """Append the earliest candidate's row after the final duplicate check, count it, report it."""
        index_no, work = state.in_flight.popleft()
        row = work if state.pool is None else work.result()
        if row is None:                   # cancelled mid-candidate: stop at the first gap
            state.cancelled = True
            return
        row = self._capped(self._recheck(row, state.dedup), state)
        out.append(row)
        state.attempts += 1
        kept = row["status"] == "kept"
        state.balance.committed(index_no, (row.get("meta") or {}).get("intended_label"),
                                records.answer_text(row) if kept and self.kind.label_set else None)
        if kept:
            state.kept += 1
            state.run_kept += 1
            with self._lock:
                state.dedup.add(records.user_text(row), row["id"])
            self.on_event(ExampleAccepted(row))
        else:
            state.rejected[row["reason"]] += 1
            self.on_event(ExampleRejected(row, row["reason"]))
        self._report(state)
        if state.kept < state.target and self.cancel.is_set() and not state.in_flight:
            state.cancelled = True

    def _stop_or_give_up(self, state: _Run) -> None:
        """Nothing in flight and nothing started: the run was stopped, or the attempt budget is spent."""
        if self.cancel.is_set():
            state.cancelled = True
            return
        raise StillroomError(
            f"{self.project.synthetic_path}: gave up after {state.attempts} candidates with "
            f"{state.kept}/{state.target} kept; the teacher's output keeps failing the checks "
            f"({_top(state.rejected)})",
            "look at the rejected rows, add seeds, or loosen generation settings")

    def _report(self, state: _Run) -> None:
        tps = self.teacher_tokens / self.teacher_seconds if self.teacher_seconds else 0.0
        self.on_event(GenerationProgress(state.kept, sum(state.rejected.values()), state.target,
                                         state.elapsed(), self.teacher_tokens, tps, dict(state.rejected),
                                         self.note))

    def _result(self, state: _Run) -> GenerationResult:
        elapsed = state.elapsed()
        result = GenerationResult(state.kept, sum(state.rejected.values()), state.target, elapsed,
                                  state.cancelled, dict(state.rejected), self.teacher_tokens,
                                  self.teacher_seconds)
        self.on_event(GenerationFinished(state.kept, result.rejected, state.target, elapsed, state.cancelled))
        return result

    def _choose_label(self, counts: Counter, index_no: int) -> Optional[str]:
        labels = self.kind.label_set
        if not labels:
            return None
        fewest = min(counts.get(label, 0) for label in labels)
        tied = [label for label in labels if counts.get(label, 0) == fewest]
        return random.Random(f"label:{self.config.generation.seed}:{index_no}").choice(tied)

    def _capped(self, row: dict, state: "_Run") -> dict:
        """At commit, with K > 1: a kept row whose label already has its share of the target while
        another label has less is set aside as "over-share" (answer kept, so Review can restore it).
        Candidates started before a lagging label fell behind would otherwise overshoot the labels the
        teacher always agrees on. One at a time never gets there: it always asks for the label with
        fewest rows. Decided from the rows committed before it, so never from timing."""
        labels = self.kind.label_set
        if self.concurrency == 1 or not labels or row["status"] != "kept":
            return row
        share = -(-state.target // len(labels))
        kept = state.balance.kept()
        if kept[records.answer_text(row)] >= share and any(kept[other] < share for other in labels):
            row["status"], row["reason"] = "rejected", "over-share"
        return row


@dataclass
class _Run:
    """One run's progress: counts, the dedup index, and the candidates started but not committed."""
    target: int
    budget: int                         # the most candidates this run may commit
    kept: int
    rejected: Counter
    dedup: NearDupIndex
    next_index: int
    window: int                         # candidates started but not committed, at most
    balance: _LabelWindow
    start: float
    attempts: int = 0                   # committed by this run, kept or rejected
    run_kept: int = 0                   # kept and committed by this run (with attempts, the acceptance rate)
    cancelled: bool = False
    pool: Optional[ThreadPoolExecutor] = None
    in_flight: deque = field(default_factory=deque)   # (index, future or row), in index order

    def wanted(self) -> int:
        """How many more candidates the acceptance rate so far says are needed."""
        rate = max(self.run_kept / self.attempts, 0.05) if self.attempts >= 8 else 1.0
        return max(1, math.ceil((self.target - self.kept) / rate))

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class _LabelWindow:
    """The label counts a new candidate is balanced against: the kept rows committed a whole window of
    indices before it, plus the candidates intended since. Candidates finish in any order, but every index
    of that window is committed before the next index starts, so the counts never depend on timing.

    A candidate not yet committed counts as its label's share of a kept row: the rate at which that
    label's candidates have been kept so far (settled rows, one kept and one not assumed). A label the
    teacher rarely agrees with then keeps being asked for while it lags, as it is one candidate at a time
    (with K = 1 the window holds no uncommitted candidate); counting each such candidate as a whole row
    let the other labels fill the target first (on the demo, 1–2 "account" rows in 24 at K = 8)."""

    def __init__(self, kept: Counter, window: int, asked: Optional[Counter] = None,
                 agreed: Optional[Counter] = None):
        self.window = window
        self.settled = kept                 # kept rows' labels committed before the window
        self.asked = asked or Counter()     # candidates committed before the window, by intended label
        self.agreed = agreed or Counter()   # of those, kept under the label they were meant for
        self.recent: deque = deque()        # (index, intended label, kept row's label or None), in the window
        self.intended: deque = deque()      # (index, intended label), started, in the window

    @classmethod
    def from_rows(cls, rows: list[dict], window: int) -> "_LabelWindow":
        kept, asked, agreed = Counter(), Counter(), Counter()
        for row in rows:
            label = records.answer_text(row) if row.get("status") == "kept" else None
            intended = (row.get("meta") or {}).get("intended_label")
            cls._settle(kept, asked, agreed, intended, label)
        return cls(kept, window, asked, agreed)

    @staticmethod
    def _settle(kept: Counter, asked: Counter, agreed: Counter, intended, label) -> None:
        if label is not None:
            kept[label] += 1
        if intended:
            asked[intended] += 1
            agreed[intended] += label == intended

    def kept_rate(self, label: str) -> float:
        return (self.agreed[label] + 1) / (self.asked[label] + 2)

    def counts(self, index: int) -> Counter:
        while self.recent and self.recent[0][0] <= index - self.window:
            _, intended, label = self.recent.popleft()
            self._settle(self.settled, self.asked, self.agreed, intended, label)
        while self.intended and self.intended[0][0] <= index - self.window:
            self.intended.popleft()
        counts = Counter({label: float(n) for label, n in self.settled.items()})
        for _, label in self.intended:
            counts[label] += self.kept_rate(label)
        return counts

    def kept(self) -> Counter:
        """Kept rows by label, every row committed so far."""
        return self.settled + Counter(label for _, _, label in self.recent if label is not None)

    def started(self, index: int, label: Optional[str]) -> None:
        if label:
            self.intended.append((index, label))

    def committed(self, index: int, intended: Optional[str], kept_label: Optional[str]) -> None:
        self.recent.append((index, intended, kept_label))


def _next_index(rows: list[dict]) -> int:
    highest = max((i for i in map(records.synthetic_index, rows) if i is not None), default=-1)
    return max(highest + 1, len(rows))


def _top(counter: Counter) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counter.most_common(3)) or "no rows"


def generate(project: Project, target: int, *, teacher: Optional[TextModel] = None,
             on_event: EventSink = ignore, cancel: Optional[threading.Event] = None) -> GenerationResult:
    """Fill the project's synthetic rows to `target` kept rows. Loads the teacher unless given one."""
    own = teacher is None
    if own:
        from .backends import load_teacher
        on_event(Status(f"loading teacher {project.config.teacher.model}"))
        teacher = load_teacher(project, batched=True)
    try:
        return Generator(project, teacher, on_event=on_event, cancel=cancel).run(target)
    finally:
        if own:
            teacher.close()
