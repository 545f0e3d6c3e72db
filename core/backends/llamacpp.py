"""In-process llama.cpp (llama-cpp-python) for any GGUF file.

Two decoding paths share one set of memory-mapped weights:

* the single path (`complete`, `chat`) drives llama-cpp-python's high-level `Llama`, one sequence at a
  time, with its prompt cache;
* the batched path (`complete_batch`, `chat_batch`, and `complete`/`chat` when `parallel` > 1) runs a
  continuous-batching engine over llama.cpp's low-level API: a second context with one KV sequence per
  slot; every step one `llama_decode` for the last sampled token of every running sequence, and one
  for each new prompt, whole, as the single path evaluates it; per-sequence sampler chains built with
  the same settings as the single path, stop strings, per-sequence max tokens and cancel. A new request
  starts from the longest prefix of its prompt cached in any slot (copied from another slot's KV buffer
  when need be), so a few-shot header common to many requests is evaluated once; a shared prefix
  whose last slot is about to be overwritten is first kept in one of as many spare sequences.

Each slot keeps its own KV buffer (llama.cpp's default, non-unified cache): a sequence's cells then sit
in position order exactly as in the single path, so on SmolLM2 its logits, and its greedy output, are
bit-identical to the single path's. A unified cache would make prefix copies free but interleaves the
sequences' cells, and the changed summation order flipped greedy tokens at logit margins of 0.3. On the
bundled Gemma 3 (Q4_K_M) llama.cpp's logits for a sequence also depend on how many sequences share its
decode step (by up to about 1 logit), so its batched samples differ from the single path's.
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ModelError
from ..models import check_gguf
from .base import Completion, SamplingParams, TokenCallback
from .llamacpp_load import open_gguf

_BASE_NAME = re.compile(r"(^|[-_ ])(base|pt)([-_ .]|$)", re.I)


_quiet = None


def _silence_llama_log() -> None:
    """llama.cpp logs to stderr even with verbose=False (e.g. the SWA cache notice); drop its log."""
    global _quiet
    if _quiet is None:
        import llama_cpp
        _quiet = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_quiet, None)


class LlamaCppModel:
    """A GGUF model loaded once; chat when it has a chat template, completion always."""

    def __init__(self, path: Path, *, name: str = "", n_ctx: int = 2048, n_threads: int = 0,
                 n_gpu_layers: int = 0, is_base: Optional[bool] = None, seed: int = 0,
                 parallel: int = 1, cpu_repack: str = "auto"):
        path = Path(path)
        check_gguf(path)
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise ModelError("llama-cpp-python is not installed", "pip install llama-cpp-python") from None
        _silence_llama_log()
        self.cpu_repack = cpu_repack
        try:
            self.llm = open_gguf(path, cpu_repack=cpu_repack, n_ctx=n_ctx,
                                 n_threads=n_threads or os.cpu_count(), n_gpu_layers=n_gpu_layers,
                                 seed=seed, verbose=False)
        except MemoryError:
            raise ModelError(f"{path}: out of memory while loading the model",
                             "use a smaller model or lower teacher.n_ctx") from None
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: llama.cpp could not load the model: {exc}",
                             "if memory is short, use a smaller model or lower teacher.n_ctx") from None
        self.path = path
        self.name = name or path.stem
        meta = self.llm.metadata or {}
        self.chat_template = meta.get("tokenizer.chat_template", "")
        self.supports_chat = bool(self.chat_template)
        if is_base is None:
            is_base = _BASE_NAME.search(meta.get("general.name", "") + " " + path.stem) is not None
        self.is_base = bool(is_base)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count()
        self.n_gpu_layers = n_gpu_layers
        self._scorer = None
        self._lock = threading.Lock()    # one decode at a time per loaded model
        self._score_lock = threading.Lock()
        self.parallel = max(1, int(parallel))   # sequences decoded together by the batched path
        self.prefix_cache = True                # batched path: reuse a slot's cached prompt prefix
        self._engine: Optional[_BatchEngine] = None
        self._engine_lock = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        """How many requests callers should keep in flight (the batched engine's slots)."""
        return self.parallel

    # ------------------------------------------------------------------ protocol
    def complete(self, prompt: str, params: SamplingParams, on_token: Optional[TokenCallback] = None,
                 cancel: Optional[threading.Event] = None) -> Completion:
        if self.parallel > 1 and not params.top_logprobs:
            return self._submit(self._prompt_tokens(prompt), params, on_token, cancel).wait()
        prompt_tokens = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        self._check_context(prompt_tokens, params)
        kwargs = self._kwargs(params)
        with self._lock:
            stream = self.llm.create_completion(prompt, stream=True, **kwargs)
            return self._drain(stream, prompt_tokens, on_token, cancel, key="text")

    def chat(self, messages: Sequence[dict], params: SamplingParams,
             on_token: Optional[TokenCallback] = None,
             cancel: Optional[threading.Event] = None) -> Completion:
        if not self.supports_chat:
            raise ModelError(f"{self.path}: the model has no chat template; use completion mode")
        if self.parallel > 1:
            tokens, params = self._chat_tokens(messages, params)
            return self._submit(tokens, params, on_token, cancel).wait()
        kwargs = self._kwargs(params)
        kwargs.pop("logprobs", None)
        with self._lock:
            stream = self.llm.create_chat_completion(messages=list(messages), stream=True, **kwargs)
            return self._drain(stream, 0, on_token, cancel, key="delta")

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation after `prompt` (teacher-forced, no sampling).

        Runs in a second context over the same (memory-mapped) weights, so a stable prompt prefix stays
        cached there while the main context writes new inputs: scoring a label costs a few tokens. With
        the batched engine running, it runs on the engine's thread (see _BatchEngine.call).
        """
        if self.parallel > 1:
            return self._batch_engine().call(lambda: self._score(prompt, continuations))
        return self._score(prompt, continuations)

    def _score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        import numpy as np
        with self._score_lock:
            scorer = self._scorer_llm()
            base = scorer.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            scores = []
            for text in continuations:
                tokens = scorer.tokenize(text.encode("utf-8"), add_bos=False, special=False)
                total = 0.0
                for i, token in enumerate(tokens):
                    logits = self._logits_after(scorer, base + tokens[:i])
                    shifted = logits - logits.max()
                    total += float(shifted[token] - np.log(np.exp(shifted).sum()))
                scores.append(total)
            return scores

    def _scorer_llm(self):
        if self._scorer is None:
            self._scorer = open_gguf(self.path, cpu_repack=self.cpu_repack, n_ctx=self.n_ctx,
                                     n_threads=self.n_threads, n_gpu_layers=self.n_gpu_layers, verbose=False)
        return self._scorer

    @staticmethod
    def _logits_after(llm, tokens: list[int]):
        """Last-position logits for `tokens`, evaluating only what differs from the cached tokens."""
        import numpy as np
        cached = llm.input_ids[:llm.n_tokens].tolist()
        keep = 0
        limit = min(len(cached), len(tokens) - 1)   # always evaluate at least one token
        while keep < limit and cached[keep] == tokens[keep]:
            keep += 1
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    # ------------------------------------------------------------------ batched path
    def complete_batch(self, prompts: Sequence[str], params, cancel: Optional[threading.Event] = None,
                       on_token=None) -> list[Completion]:
        """Complete several prompts decoded together; one Completion per prompt, in order.

        `params` is one SamplingParams for all, or one per prompt (per-sequence max tokens, stops,
        seeds). `on_token(i, piece)`, when given, streams prompt i's text. Greedy outputs equal the
        single path's, sequence by sequence.
        """
        params_list = self._per_prompt(params, len(prompts))
        requests = [self._submit(self._prompt_tokens(p), sp, _bind(on_token, i), cancel)
                    for i, (p, sp) in enumerate(zip(prompts, params_list))]
        return [r.wait() for r in requests]

    def chat_batch(self, conversations: Sequence[Sequence[dict]], params,
                   cancel: Optional[threading.Event] = None, on_token=None) -> list[Completion]:
        """Answer several chats decoded together (see complete_batch)."""
        if not self.supports_chat:
            raise ModelError(f"{self.path}: the model has no chat template; use completion mode")
        params_list = self._per_prompt(params, len(conversations))
        requests = []
        for i, (messages, sp) in enumerate(zip(conversations, params_list)):
            tokens, sp = self._chat_tokens(messages, sp)
            requests.append(self._submit(tokens, sp, _bind(on_token, i), cancel))
        return [r.wait() for r in requests]

    @staticmethod
    def _per_prompt(params, n: int) -> list:
        if isinstance(params, SamplingParams):
            return [params] * n
        params = list(params)
        if len(params) != n:
            raise ValueError(f"{len(params)} sampling settings for {n} prompts")
        return params

    def _prompt_tokens(self, prompt: str) -> list[int]:
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def _chat_tokens(self, messages: Sequence[dict], params: SamplingParams):
        """The chat template applied exactly as llama-cpp-python's chat handler applies it."""
        from llama_cpp import llama_chat_format
        if getattr(self, "_formatter", None) is None:
            model = self.llm._model
            eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=self.chat_template,
                eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id])
        result = self._formatter(messages=list(messages))
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                                   special=True)
        extra = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        params = SamplingParams(**{**params.__dict__, "stop": tuple(params.stop) + tuple(extra)})
        return tokens, params

    def _submit(self, tokens: list[int], params: SamplingParams, on_token, cancel) -> "_Request":
        self._check_context(len(tokens), params)
        return self._batch_engine().submit(tokens, params, on_token, cancel)

    def _batch_engine(self) -> "_BatchEngine":
        with self._engine_lock:
            if self._engine is not None and self._engine.closed:   # failed earlier: start afresh
                self._engine.close()
                self._engine = None
            if self._engine is None:
                if self.llm is None:
                    raise ModelError(f"{self.name}: the model is closed")
                self._engine = _BatchEngine(self, max(self.parallel, 1))
            return self._engine

    def clear_batch_cache(self) -> None:
        """Forget the batched engine's cached prompts (the next requests decode from scratch)."""
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    def start_batching(self, slots: int) -> None:
        """Size the batched engine for `slots` sequences at once (restarts it when idle)."""
        slots = max(1, int(slots))
        with self._engine_lock:
            self.parallel = max(self.parallel, slots) if self.parallel > 1 else slots
            if self._engine is not None and self._engine.n_slots < slots:
                self._engine.close()
                self._engine = None

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
        for attr in ("llm", "_scorer"):
            llm = getattr(self, attr, None)
            if llm is not None:
                llm.close()
                setattr(self, attr, None)

    # ------------------------------------------------------------------ helpers
    def _check_context(self, prompt_tokens: int, params: SamplingParams) -> None:
        if prompt_tokens + params.max_tokens > self.n_ctx:
            raise ModelError(f"{self.name}: prompt of {prompt_tokens} tokens plus {params.max_tokens} new "
                             f"tokens exceeds the context of {self.n_ctx}",
                             "raise teacher.n_ctx or lower generation.few_shot")

    @staticmethod
    def _kwargs(params: SamplingParams) -> dict:
        kwargs = dict(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                      stop=list(params.stop) or None, seed=params.seed)
        if params.temperature <= 0:
            kwargs.update(temperature=0.0, top_k=1)
        if params.top_logprobs:
            kwargs["logprobs"] = params.top_logprobs
        return kwargs

    def _drain(self, stream, prompt_tokens: int, on_token, cancel, key: str) -> Completion:
        start = time.perf_counter()
        first = None
        pieces: list[str] = []
        count = 0
        finish = "stop"
        logprobs = []
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                if key == "text":
                    piece = choice.get("text") or ""
                    lp = choice.get("logprobs")
                    if lp and lp.get("top_logprobs"):
                        logprobs.extend(lp["top_logprobs"])
                else:
                    piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    if first is None:
                        first = time.perf_counter() - start
                    pieces.append(piece)
                    count += 1
                    if on_token is not None:
                        on_token(piece)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        text = "".join(pieces)
        if text and self.llm is not None:
            # A streamed chunk can hold several tokens (held back at a UTF-8 or stop-string boundary).
            count = max(count, len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)))
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=count, seconds=time.perf_counter() - start,
                          first_token_seconds=first, top_logprobs=logprobs or None)


def _bind(on_token, i):
    if on_token is None:
        return None
    return lambda piece: on_token(i, piece)


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


class _Request(_Outcome):
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
        self.request: Optional[_Request] = None
        self.todo: list[int] = []          # prompt tokens still to decode
        self.sampler = None
        self.generated: list[int] = []
        self.sent = 0                      # characters already streamed
        self.first: Optional[float] = None
        self.started = 0.0
        self.used = 0.0                    # when a request last took it, or a prefix was copied from it
        self.shared = 0                    # leading tokens that another request's prompt also began with


class _BatchEngine:
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
        self.queue: list[_Request] = []
        self.jobs: list[_Job] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name=f"llama-batch-{model.name}", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ API
    def submit(self, tokens, params, on_token, cancel) -> _Request:
        request = _Request(list(tokens), params, on_token, cancel)
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

    def _place(self, request: _Request, free: list, shared: dict) -> None:
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

    def _assign(self, slot: _Slot, request: _Request, keep: int) -> None:
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
        safe = len(text)
        if not final:
            # Hold back a tail that may be the start of a stop string.
            for stop in stops:
                for n in range(min(len(stop) - 1, len(text)), 0, -1):
                    if text.endswith(stop[:n]):
                        safe = min(safe, len(text) - n)
                        break
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
    def _resolve(request: _Request, completion: Completion) -> None:
        request.result = completion
        request.done.set()


_WORTH_COPYING = 16   # tokens of shared prefix worth a KV buffer copy or a one-step wait


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
