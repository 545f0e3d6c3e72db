"""In-process llama.cpp (llama-cpp-python) for any GGUF file."""
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

_BASE_NAME = re.compile(r"(^|[-_ ])(base|pt)([-_ .]|$)", re.I)


class LlamaCppModel:
    """A GGUF model loaded once; chat when it has a chat template, completion always."""

    def __init__(self, path: Path, *, name: str = "", n_ctx: int = 2048, n_threads: int = 0,
                 n_gpu_layers: int = 0, is_base: Optional[bool] = None, seed: int = 0):
        path = Path(path)
        check_gguf(path)
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError("llama-cpp-python is not installed", "pip install llama-cpp-python") from None
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                             n_gpu_layers=n_gpu_layers, seed=seed, verbose=False)
        except MemoryError:
            raise ModelError(f"{path}: out of memory while loading the model",
                             "use a smaller model or lower teacher.n_ctx") from None
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: llama.cpp could not load the model: {exc}") from None
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

    # ------------------------------------------------------------------ protocol
    def complete(self, prompt: str, params: SamplingParams, on_token: Optional[TokenCallback] = None,
                 cancel: Optional[threading.Event] = None) -> Completion:
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
        kwargs = self._kwargs(params)
        kwargs.pop("logprobs", None)
        with self._lock:
            stream = self.llm.create_chat_completion(messages=list(messages), stream=True, **kwargs)
            return self._drain(stream, 0, on_token, cancel, key="delta")

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation after `prompt` (teacher-forced, no sampling).

        Runs in a second context over the same (memory-mapped) weights, so a stable prompt prefix stays
        cached there while the main context writes new inputs: scoring a label costs a few tokens.
        """
        import numpy as np
        with self._lock:
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
            from llama_cpp import Llama
            self._scorer = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                 n_gpu_layers=self.n_gpu_layers, verbose=False)
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

    def close(self) -> None:
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
        return Completion(text="".join(pieces), finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=count, seconds=time.perf_counter() - start,
                          first_token_seconds=first, top_logprobs=logprobs or None)
