"""Continuous batching over llama.cpp's low-level API: the batched path of `LlamaCppModel`.

A second context over the model's memory-mapped weights holds one KV sequence per slot; every step is
one `llama_decode` for the last sampled token of every running sequence, and one for each new prompt,
whole, as the single path evaluates it; per-sequence sampler chains are built with the same settings as
the single path, with stop strings, per-sequence max tokens and cancel. A new request starts from the
longest prefix of its prompt cached in any slot (copied from another slot's KV buffer when need be), so
a few-shot header common to many requests is evaluated once; a shared prefix whose last slot is about
to be overwritten is first kept in one of as many spare sequences.

Each slot keeps its own KV buffer (llama.cpp's default, non-unified cache): a sequence's cells then sit
in position order exactly as in the single path, so on SmolLM2 its logits, and its greedy output, are
bit-identical to the single path's. A unified cache would make prefix copies free but interleaves the
sequences' cells, and the changed summation order flipped greedy tokens at logit margins of 0.3. On the
bundled Gemma 3 (Q4_K_M) llama.cpp's logits for a sequence also depend on how many sequences share its
decode step (by up to about 1 logit), so its batched samples differ from the single path's.
"""
from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Optional

from ..errors import ModelError
from .base import Completion, SamplingParams
from .streaming import held_back

if TYPE_CHECKING:
    from .llamacpp import LlamaCppModel


AUTO_SLOTS = (8, 4, 2)        # 8: the most that measured faster (issue 8: K=12 and 16 were within noise)
KV_BUDGET = 2 * 1024 ** 3     # bytes the engine's KV cache may take by default, at most an 8th of the RAM


def kv_bytes_per_token(metadata: dict) -> int:
    """f16 K and V bytes one token takes in one sequence, from a GGUF's metadata."""
    arch = metadata.get("general.architecture", "")

    def number(key: str, default: int = 0) -> int:
        try:
            return int(metadata.get(f"{arch}.{key}", default))
        except (TypeError, ValueError):
            return default

    heads = max(1, number("attention.head_count", 1))
    head_dim = number("embedding_length") // heads
    kv_heads = number("attention.head_count_kv", heads)
    width = number("attention.key_length", head_dim) + number("attention.value_length", head_dim)
    return number("block_count") * kv_heads * width * 2


def physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def auto_slots(metadata: dict, n_ctx: int, memory: Optional[int] = None) -> int:
    """Candidates in flight for teacher.max_in_flight = 0 (auto): the most of AUTO_SLOTS whose KV cache
    (two sequences a slot, the slot and its spare, n_ctx tokens each) fits in KV_BUDGET and an 8th of the
    RAM; 1 (no engine, the single path) when none does, as for a large model on a small machine."""
    per_token = kv_bytes_per_token(metadata)
    if per_token <= 0:
        return 1
    memory = physical_memory() if memory is None else memory
    budget = min(KV_BUDGET, memory // 8) if memory else KV_BUDGET
    return next((k for k in AUTO_SLOTS if 2 * k * n_ctx * per_token <= budget), 1)


class _Outcome:
    """Work handed to the engine's thread: the caller waits for its result or its error."""

    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error: Optional[BaseException] = None

    def wait(self):
        while not self.done.wait(0.5):
            pass
        if self.error is not None:
            raise self.error
        return self.result


class Request(_Outcome):
    def __init__(self, tokens: list[int], params: SamplingParams, on_token, cancel):
        super().__init__()
        self.tokens = tokens
        self.params = params
        self.on_token = on_token
        self.cancel = cancel
        self.submitted = time.perf_counter()


class _Job(_Outcome):
    """A function to run on the engine's thread."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:     # handed to the caller
            self.error = exc
        self.done.set()


class _Slot:
    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.cached: list[int] = []        # tokens whose KV entries this sequence holds
        self.request: Optional[Request] = None
        self.todo: list[int] = []          # prompt tokens still to decode
        self.sampler = None
        self.generated: list[int] = []
        self.sent = 0                      # characters already streamed
        self.first: Optional[float] = None
        self.started = 0.0
        self.used = 0.0                    # when a request last took it, or a prefix was copied from it
        self.shared = 0                    # leading tokens that another request's prompt also began with


class BatchEngine:
    """Continuous batching over llama.cpp's low-level API (see the module docstring).

    One daemon thread owns the context; callers submit requests and wait on them. The loop sleeps when
    there is nothing to do and exits when closed.
    """

    def __init__(self, model: LlamaCppModel, n_slots: int, n_batch: int = 512):
        import llama_cpp as lc
        self.lc = lc
        self.model = model
        self.n_slots = n_slots
        self.n_batch = max(n_batch, n_slots)
        # The single path's context settings (attention kernel, KV types, RoPE...), so a sequence's
        # logits, and so its greedy output, are the same on both paths.
        source = model.llm.context_params
        params = type(source).from_buffer_copy(source)
        # Spare sequences hold the few-shot prefixes of slots about to be overwritten (see _keep).
        n_spare = n_slots if model.prefix_cache else 0
        params.n_ctx = model.n_ctx * (n_slots + n_spare)
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = n_slots + n_spare
        params.n_threads = model.n_threads
        params.n_threads_batch = model.n_threads
        params.no_perf = True
        self.ctx = lc.llama_init_from_model(model.llm.model, params)
        if not self.ctx:
            raise ModelError(f"{model.name}: llama.cpp could not create a context for {n_slots} sequences",
                             "lower teacher.max_in_flight or teacher.n_ctx")
        self.mem = lc.llama_get_memory(self.ctx)
        self.vocab = lc.llama_model_get_vocab(model.llm.model)
        self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [_Slot(i) for i in range(n_slots)]
        self.spares = [_Slot(n_slots + i) for i in range(n_spare)]
        self.holders = self.slots + self.spares    # every sequence a prompt prefix can be taken from
        self.n_swa = lc.llama_model_n_swa(model.llm.model)
        self.prompt_tokens_evaluated = 0   # prompt tokens decoded (not taken from a cached prefix)
        self.queue: list[Request] = []
        self.jobs: list[_Job] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name=f"llama-batch-{model.name}", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ API
    def submit(self, tokens, params, on_token, cancel) -> Request:
        request = Request(list(tokens), params, on_token, cancel)
        with self.cond:
            if self.closed:
                raise ModelError(f"{self.model.name}: the model is closed")
            self.queue.append(request)
            self.cond.notify()
        return request

    def call(self, fn):
        """Run fn on the engine's thread between two steps; its result, or its exception, is the
        caller's. For other llama.cpp work on the same weights (label scoring): llama.cpp's OpenMP
        thread team belongs to the calling thread, and while a second thread's team existed, decoding
        measured 20–30% slower (one thread, one team)."""
        job = _Job(fn)
        with self.cond:
            if self.closed:
                raise ModelError(f"{self.model.name}: the model is closed")
            self.jobs.append(job)
            self.cond.notify()
        return job.wait()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            lc = self.lc
            for slot in self.slots:
                self._free_sampler(slot)
            lc.llama_batch_free(self.batch)
            lc.llama_free(self.ctx)

    # ------------------------------------------------------------ loop
    def _loop(self) -> None:
        try:
            while True:
                with self.cond:
                    while (not self.closed and not self.queue and not self.jobs
                           and not any(s.request for s in self.slots)):
                        self.cond.wait(1.0)
                    if self.closed:
                        break
                    self._admit()
                    jobs, self.jobs = self.jobs, []   # taken once admitting succeeded: else failed with the rest
                for job in jobs:
                    job.run()
                self._step()
        except BaseException as exc:   # fail every waiting caller rather than hang them
            error = exc if isinstance(exc, ModelError) else ModelError(f"{self.model.name}: batched "
                                                                        f"decoding failed: {exc}")
            with self.cond:
                self.closed = True
                pending = self.queue + [s.request for s in self.slots if s.request] + self.jobs
                self.queue, self.jobs = [], []
            for request in pending:
                request.error = error
                request.done.set()
            return
        with self.cond:
            pending = self.queue + [s.request for s in self.slots if s.request] + self.jobs
            self.queue, self.jobs = [], []
        for request in pending:
            request.error = ModelError(f"{self.model.name}: the model was closed during generation")
            request.done.set()

    def _admit(self) -> None:
        """Move queued requests into free slots, reusing the longest cached prompt prefix anywhere.

        A request takes the free slot whose cached tokens share the longest prefix with its prompt
        (the least recently used one when none does). When another slot, busy or free, holds a longer
        shared prefix, that slot's KV buffer is copied into the request's sequence and cut to the
        prefix. A request whose prefix another slot is still evaluating waits for it (one step), so
        a few-shot header common to many candidates started together is evaluated once.
        """
        waiting = []
        try:
            while self.queue:
                free = [s for s in self.slots if s.request is None]
                if not free:
                    break
                # Left in the queue until placed: if placing fails, the loop fails it with the rest.
                request = self.queue[0]
                if request.cancel is not None and request.cancel.is_set():
                    self.queue.pop(0)
                    self._resolve(request, Completion("", "cancelled", len(request.tokens), 0, 0.0))
                    continue
                shared = self._shared(request.tokens)
                if self._waits(request.tokens, shared):
                    waiting.append(self.queue.pop(0))
                    continue
                self._place(request, free, shared)
                self.queue.pop(0)
        finally:
            self.queue[:0] = waiting

    def _shared(self, tokens: list[int]) -> dict:
        """Per slot, how many leading tokens of `tokens` it holds that can be reused (none without
        prefix reuse; never the whole prompt: its last token is decoded again for fresh logits)."""
        if not self.model.prefix_cache:
            return {s.seq_id: 0 for s in self.holders}
        limit = len(tokens) - 1
        return {s.seq_id: self._usable(s, min(_common_prefix(s.cached, tokens), limit)) for s in self.holders}

    def _waits(self, tokens: list[int], shared: dict) -> bool:
        """Whether another slot is evaluating a longer prefix of this prompt than any slot holds."""
        if not self.model.prefix_cache:
            return False
        coming = max((_common_prefix(s.cached + s.todo, tokens) for s in self.slots if s.todo), default=0)
        return min(coming, len(tokens) - 1) >= max(shared.values()) + _WORTH_COPYING

    def _place(self, request: Request, free: list, shared: dict) -> None:
        """Put a request in the free slot whose cache is least worth keeping, starting from the longest
        prefix cached anywhere (in place, or copied from another slot's buffer)."""
        source = max(self.holders, key=lambda s: shared[s.seq_id])
        best = shared[source.seq_id]
        loss = {s.seq_id: self._loss(s, shared[s.seq_id]) for s in free}
        slot = min(free, key=lambda s: (loss[s.seq_id], shared[s.seq_id] + _WORTH_COPYING <= best, s.used))
        keep = shared[slot.seq_id]
        if loss[slot.seq_id]:
            self._keep(slot)
        for holder in self.holders:      # each now known to share that much with another prompt
            if shared[holder.seq_id] >= _WORTH_COPYING:
                holder.shared = max(holder.shared, shared[holder.seq_id])
        if best >= keep + _WORTH_COPYING and source is not slot:
            self._copy(source, slot)
            source.used = time.perf_counter()
            keep = best
        slot.shared = keep if keep >= _WORTH_COPYING else 0
        self._assign(slot, request, keep)

    def _copy(self, source: _Slot, target: _Slot) -> None:
        # A sequence's KV lives in its own buffer: copy the whole buffer (the caller cuts it).
        self.lc.llama_memory_seq_rm(self.mem, target.seq_id, -1, -1)
        self.lc.llama_memory_seq_cp(self.mem, source.seq_id, target.seq_id, -1, -1)

    def _keep(self, slot: _Slot) -> None:
        """Save the shared prefix of a slot about to be overwritten into the least recently used spare
        sequence, so the candidates still to come that start with it find it there."""
        if not self.spares:
            return
        spare = min(self.spares, key=lambda s: s.used)
        self._copy(slot, spare)
        self.lc.llama_memory_seq_rm(self.mem, spare.seq_id, slot.shared, -1)
        spare.cached = slot.cached[:slot.shared]
        spare.shared = slot.shared
        spare.used = time.perf_counter()

    def _loss(self, slot: _Slot, keeps: int) -> int:
        """Prompt tokens lost for good if this free slot is overwritten keeping `keeps` of it: the part
        of its cache that prompts are known to share, unless another slot also holds that part. So the
        last copy of a few-shot prefix still in use survives while a redundant slot is free."""
        if slot.shared <= keeps:
            return 0
        prefix = slot.cached[:slot.shared]
        for other in self.holders:
            if other is not slot and other.cached[:slot.shared] == prefix:
                return 0
        return slot.shared - keeps

    def _assign(self, slot: _Slot, request: Request, keep: int) -> None:
        self.lc.llama_memory_seq_rm(self.mem, slot.seq_id, keep, -1)
        slot.cached = request.tokens[:keep]
        slot.todo = request.tokens[keep:]
        slot.request = request
        slot.generated = []
        slot.sent = 0
        slot.first = None
        slot.started = slot.used = time.perf_counter()
        self._free_sampler(slot)
        slot.sampler = self._sampler(request.params)

    def _usable(self, slot: _Slot, keep: int) -> int:
        """How much of a slot's cached prefix can be kept: with sliding-window attention llama.cpp
        drops cells that left the window, and a prefix whose window is incomplete must be redone."""
        if keep <= 0 or self.n_swa <= 0:
            return max(keep, 0)
        oldest = self.lc.llama_memory_seq_pos_min(self.mem, slot.seq_id)
        return keep if oldest <= max(0, keep - self.n_swa) else 0

    def _sampler(self, params: SamplingParams):
        """The chain llama-cpp-python's Llama builds for the same settings (see Llama._init_sampler)."""
        lc = self.lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_penalties(self.model.llm.n_vocab(), 64, 1.0, 0.0, 0.0))
        if params.temperature <= 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            seed = params.seed if params.seed is not None else lc.LLAMA_DEFAULT_SEED
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(40))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_typical(1.0, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_min_p(0.05, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(params.temperature))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _free_sampler(self, slot: _Slot) -> None:
        if slot.sampler is not None:
            self.lc.llama_sampler_free(slot.sampler)
            slot.sampler = None

    def _step(self) -> None:
        """One pass: the next token of every running sequence in one decode, then each new prompt
        whole (up to n_batch tokens) in a decode of its own, chunked as the single path chunks it,
        so its logits do not depend on what else is in flight."""
        for slot in [s for s in self.slots if s.request is not None]:
            if slot.request.cancel is not None and slot.request.cancel.is_set():
                self._finish(slot, "cancelled")
        running = [s for s in self.slots if s.request is not None and not s.todo]
        if running:
            self._decode([(slot, [slot.generated[-1]]) for slot in running])
        for slot in [s for s in self.slots if s.request is not None and s.todo]:
            chunk, slot.todo = slot.todo[:self.n_batch], slot.todo[self.n_batch:]
            self.prompt_tokens_evaluated += len(chunk)
            self._decode([(slot, chunk)])

    def _decode(self, work: list) -> None:
        """Decode (slot, tokens) pairs in one llama_decode; sample each slot whose tokens are all in."""
        lc = self.lc
        batch = self.batch
        batch.n_tokens = 0
        sample_at: list[tuple[_Slot, int]] = []
        for slot, chunk in work:
            wants_logits = not slot.todo
            for j, token in enumerate(chunk):
                k = batch.n_tokens
                batch.token[k] = token
                batch.pos[k] = len(slot.cached) + j
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = slot.seq_id
                batch.logits[k] = wants_logits and j == len(chunk) - 1
                batch.n_tokens += 1
            slot.cached.extend(chunk)
            if wants_logits:
                sample_at.append((slot, batch.n_tokens - 1))
        code = lc.llama_decode(self.ctx, batch)
        if code != 0:
            raise ModelError(f"{self.model.name}: llama_decode failed with code {code}",
                             "lower teacher.max_in_flight or teacher.n_ctx")
        for slot, index in sample_at:
            token = lc.llama_sampler_sample(slot.sampler, self.ctx, index)
            self._advance(slot, token)

    def _advance(self, slot: _Slot, token: int) -> None:
        request = slot.request
        if slot.first is None:
            slot.first = time.perf_counter() - slot.started
        if self.lc.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return
        slot.generated.append(token)
        text = self._text(slot)
        stops = [s for s in request.params.stop if s]
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            self._stream(slot, text[:cut], final=True)
            self._finish(slot, "stop", text[:cut])
            return
        if len(slot.generated) >= request.params.max_tokens:
            self._stream(slot, text, final=True)
            self._finish(slot, "length", text)
            return
        self._stream(slot, text, final=False, stops=stops)

    def _text(self, slot: _Slot) -> str:
        raw = self.model.llm.detokenize(slot.generated, prev_tokens=slot.request.tokens)
        return raw.decode("utf-8", errors="ignore")

    def _stream(self, slot: _Slot, text: str, final: bool, stops=()) -> None:
        on_token = slot.request.on_token
        if on_token is None:
            return
        safe = len(text) if final else len(text) - held_back(text, stops)
        if safe > slot.sent:
            on_token(text[slot.sent:safe])
            slot.sent = safe

    def _finish(self, slot: _Slot, reason: str, text: Optional[str] = None) -> None:
        request = slot.request
        if text is None:
            text = self._text(slot) if slot.generated else ""
            if reason != "cancelled":
                self._stream(slot, text, final=True)
        completion = Completion(text=text, finish_reason=reason, prompt_tokens=len(request.tokens),
                                completion_tokens=len(slot.generated),
                                seconds=time.perf_counter() - slot.started, first_token_seconds=slot.first)
        slot.request = None
        self._free_sampler(slot)
        self._resolve(request, completion)

    @staticmethod
    def _resolve(request: Request, completion: Completion) -> None:
        request.result = completion
        request.done.set()


_WORTH_COPYING = 16   # tokens of shared prefix worth a KV buffer copy or a one-step wait


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
