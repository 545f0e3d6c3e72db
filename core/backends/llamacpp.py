"""In-process llama.cpp (llama-cpp-python) for any GGUF file.

Two decoding paths share one set of memory-mapped weights:

* the single path (`complete`, `chat`) drives llama-cpp-python's high-level `Llama`, one sequence at a
  time, with its prompt cache;
* the batched path (`complete_batch`, `chat_batch`, and `complete`/`chat` when `parallel` > 1) hands
  token lists to the continuous-batching engine in `llamacpp_batch`, which decodes many sequences
  together and reuses cached prompt prefixes; greedy outputs equal the single path's on SmolLM2.

Every GGUF is opened through `llamacpp_load.open_gguf`.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ModelError
from ..models import check_gguf
from .base import Completion, SamplingParams, TokenCallback
from .llamacpp_batch import BatchEngine, Request, auto_slots
from .llamacpp_load import open_gguf
from .streaming import drain

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
        self._forced = None                     # answer_top_logprobs' context (logits_all)
        self._lock = threading.Lock()    # one decode at a time per loaded model
        self._score_lock = threading.Lock()
        # Sequences decoded together by the batched path; 0 = sized to the model and the machine.
        self.parallel = max(1, int(parallel)) if parallel else auto_slots(meta, n_ctx)
        self.prefix_cache = True                # batched path: reuse a slot's cached prompt prefix
        self._engine: Optional[BatchEngine] = None
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
        the batched engine running, it runs on the engine's thread (see BatchEngine.call).
        """
        if self.parallel > 1:
            return self._batch_engine().call(lambda: self._score(prompt, continuations))
        return self._score(prompt, continuations)

    def score_chat_continuations(self, messages: Sequence[dict], continuations: Sequence[str]) -> list[float]:
        """score_continuations after a chat's messages and the assistant header, as its chat template
        renders them (the answer a chat teacher would write)."""
        tokens, _ = self._chat_tokens(messages, SamplingParams())
        if self.parallel > 1:
            return self._batch_engine().call(lambda: self._score_tokens(tokens, continuations))
        return self._score_tokens(tokens, continuations)

    def _score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        with self._score_lock:
            base = self._scorer_llm().tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        return self._score_tokens(base, continuations)

    def _score_tokens(self, base: list[int], continuations: Sequence[str]) -> list[float]:
        import numpy as np
        with self._score_lock:
            scorer = self._scorer_llm()
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

    def answer_top_logprobs(self, context, answer: str, k: int):
        """The k most likely tokens and their log-probabilities at each token of `answer` after
        `context` (a chat's messages, or a completion prompt): a teacher_topk.TopK.

        Teacher-forced on the answer as it was kept (after the task's checks), not read off the
        sampling: the targets then belong to exactly the text the student trains on, sampling and the
        batched engine run as they do without them, and only this pass pays for llama.cpp's
        `logits_all`. It runs in its own context over the same weights, where the prompt prefix a shot
        group shares stays cached; with the batched engine running, on the engine's thread.
        """
        if self.parallel > 1:
            return self._batch_engine().call(lambda: self._forced_top_logprobs(context, answer, k))
        return self._forced_top_logprobs(context, answer, k)

    def _forced_top_logprobs(self, context, answer: str, k: int):
        import numpy as np
        from ..teacher_topk import TopK
        if isinstance(context, str):
            prompt = self._prompt_tokens(context)
        else:
            prompt, _ = self._chat_tokens(context, SamplingParams())
        answer_ids = self.llm.tokenize(answer.encode("utf-8"), add_bos=False, special=False)
        if not answer_ids:
            return TopK([], [], [])
        tokens = prompt + answer_ids
        self._check_context(len(prompt), SamplingParams(max_tokens=len(answer_ids)))
        with self._score_lock:
            llm = self._forced_llm()
            self._eval_reusing_cache(llm, tokens)
            # Row i holds the logits after token i: rows len(prompt)-1 .. end-1 predict the answer.
            logits = np.asarray(llm.scores[len(prompt) - 1:len(tokens) - 1], dtype=np.float32)
        shifted = logits - logits.max(axis=1, keepdims=True)
        logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        k = min(int(k), logprobs.shape[1])
        top = np.argpartition(-logprobs, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(logprobs, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        return TopK(list(answer_ids), top.tolist(), np.take_along_axis(logprobs, top, axis=1).tolist())

    def _forced_llm(self):
        """A context that keeps the logits of every evaluated position (logits_all), for
        answer_top_logprobs only."""
        if self._forced is None:
            self._forced = open_gguf(self.path, cpu_repack=self.cpu_repack, n_ctx=self.n_ctx,
                                     n_threads=self.n_threads, n_gpu_layers=self.n_gpu_layers,
                                     logits_all=True, verbose=False)
        return self._forced

    def vocabulary(self):
        """The model's vocabulary (core/vocabulary.py)."""
        from ..vocabulary import llama_vocabulary
        return llama_vocabulary(self.llm)

    @staticmethod
    def _eval_reusing_cache(llm, tokens: list[int]) -> None:
        """Evaluate `tokens`, keeping the cached positions they share with what was evaluated before."""
        cached = llm.input_ids[:llm.n_tokens].tolist()
        keep = 0
        limit = min(len(cached), len(tokens) - 1)   # always evaluate at least one token
        while keep < limit and cached[keep] == tokens[keep]:
            keep += 1
        llm.n_tokens = keep
        llm.eval(tokens[keep:])

    @staticmethod
    def _logits_after(llm, tokens: list[int]):
        """Last-position logits for `tokens`, evaluating only what differs from the cached tokens."""
        import numpy as np
        LlamaCppModel._eval_reusing_cache(llm, tokens)
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

    def _submit(self, tokens: list[int], params: SamplingParams, on_token, cancel) -> Request:
        self._check_context(len(tokens), params)
        return self._batch_engine().submit(tokens, params, on_token, cancel)

    def _batch_engine(self) -> BatchEngine:
        with self._engine_lock:
            if self._engine is not None and self._engine.closed:   # failed earlier: start afresh
                self._engine.close()
                self._engine = None
            if self._engine is None:
                if self.llm is None:
                    raise ModelError(f"{self.name}: the model is closed")
                self._engine = BatchEngine(self, max(self.parallel, 1))
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
        for attr in ("llm", "_scorer", "_forced"):
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
        """Drain llama-cpp-python's stream; `key` is "text" (completion) or "delta" (chat)."""
        logprobs: list = []

        def read(chunk):
            choice = chunk["choices"][0]
            if key != "text":
                return (choice.get("delta") or {}).get("content") or "", choice.get("finish_reason")
            lp = choice.get("logprobs")
            if lp and lp.get("top_logprobs"):
                logprobs.extend(lp["top_logprobs"])
            return choice.get("text") or "", choice.get("finish_reason")

        out = drain(stream, read, on_token, cancel)
        text = out.text
        count = len(out.pieces)
        if text and self.llm is not None:
            # A streamed chunk can hold several tokens (held back at a UTF-8 or stop-string boundary).
            count = max(count, len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)))
        return Completion(text=text, finish_reason=out.finish_reason or "stop", prompt_tokens=prompt_tokens,
                          completion_tokens=count, seconds=out.seconds,
                          first_token_seconds=out.first_token_seconds, top_logprobs=logprobs or None)


def _bind(on_token, i):
    if on_token is None:
        return None
    return lambda piece: on_token(i, piece)
