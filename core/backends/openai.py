"""Any OpenAI-compatible server as a teacher: llama.cpp's server, vLLM, Ollama, LM Studio, a hosted API.

One or more base URLs (`teacher.model = "openai:<url>"` plus `teacher.servers`) serving the same model
are used round-robin; requests are streamed (cancel works mid-answer), time out after
`teacher.timeout` seconds, and are retried with exponential backoff and jitter on 429, 5xx,
timeouts and refused connections (the next try goes to the next server). A wrong model name or an
unreachable server is one clear `ModelError`. The API key is read from the environment variable
*named* by `teacher.api_key_env`, at load time; it is never stored, logged or put in an error.

The `openai` client library is imported here only, when an openai teacher is loaded.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
from typing import Optional, Sequence

from ..errors import ModelError
from .base import Completion, SamplingParams, TokenCallback
from .streaming import drain

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class _Incomplete(Exception):
    """The stream ended without a finish reason: the server dropped or interrupted the answer."""


class OpenAIModel:
    supports_chat = True
    is_base = False

    def __init__(self, ref, config, *, sleep=time.sleep):
        try:
            import openai
        except ImportError:
            raise ModelError("the openai teacher needs the openai package", "pip install openai") from None
        self._openai = openai
        urls = [ref.url] + [u.rstrip("/") for u in (getattr(config, "servers", None) or [])]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ModelError(f"teacher.servers: {url!r} is not an http(s) URL; expected http://host:port/v1")
        self.urls = list(dict.fromkeys(urls))
        self.model_name = config.model_name or ""
        self.name = self.model_name or ref.name
        self.timeout = float(config.timeout)
        self.max_retries = int(getattr(config, "max_retries", 5))
        self.max_concurrency = int(config.max_in_flight)
        self.is_base = config.mode == "completion"
        key = "sk-no-key-required"     # local servers accept anything; the client insists on a value
        if config.api_key_env:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise ModelError(f"teacher.api_key_env names {config.api_key_env!r}, but that environment "
                                 f"variable is not set", f"export {config.api_key_env}=<your key>")
        timeout = openai.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        self._uses_key = bool(config.api_key_env)
        self._clients = [openai.OpenAI(base_url=url, api_key=key, timeout=timeout, max_retries=0)
                         for url in self.urls]
        self._next = itertools.count()
        self._checked = False
        self._check_lock = threading.Lock()
        self._sleep = sleep

    # ------------------------------------------------------------------ protocol
    def complete(self, prompt: str, params: SamplingParams, on_token: Optional[TokenCallback] = None,
                 cancel: Optional[threading.Event] = None) -> Completion:
        def call(client):
            return client.completions.create(model=self.model_name, prompt=prompt, stream=True,
                                             **self._kwargs(params))
        with self._redacting():
            return self._run(call, on_token, cancel, chat=False)

    def chat(self, messages: Sequence[dict], params: SamplingParams,
             on_token: Optional[TokenCallback] = None,
             cancel: Optional[threading.Event] = None) -> Completion:
        def call(client):
            return client.chat.completions.create(model=self.model_name, messages=list(messages),
                                                  stream=True, **self._kwargs(params))
        with self._redacting():
            return self._run(call, on_token, cancel, chat=True)

    def close(self) -> None:
        for client in self._clients:
            try:
                client.close()
            except Exception:   # closing is best effort
                pass

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Fail fast, once: is a server reachable, and does it serve `model_name`?"""
        with self._redacting(), self._check_lock:
            if self._checked:
                return
            openai = self._openai
            served, last = None, None
            for url, client in zip(self.urls, self._clients):
                try:
                    served = [m.id for m in client.models.list()]
                    break
                except openai.NotFoundError:
                    served = []        # no /models endpoint: nothing to check against
                    break
                except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                    last = (url, exc)
                except openai.AuthenticationError:
                    raise ModelError(f"{url}: the server refused the API key (401)",
                                     "check the variable named by teacher.api_key_env") from None
                except openai.APIStatusError as exc:
                    served, last = [], (url, exc)
                    break
            if served is None:
                url, exc = last
                raise ModelError(f"{url}: cannot reach the OpenAI-compatible server "
                                 f"({_reason(exc)})", "start the server or fix teacher.model") from None
            if served:
                if not self.model_name:
                    if len(served) > 1:
                        raise ModelError(f"{self.urls[0]}: the server serves several models "
                                         f"({', '.join(served[:8])}); say which in teacher.model_name")
                    self.model_name = served[0]
                    self.name = self.name if self.name != self.urls[0] else served[0]
                elif self.model_name not in served:
                    raise ModelError(f"{self.urls[0]}: the server has no model {self.model_name!r}; it "
                                     f"serves {', '.join(repr(s) for s in served[:8])}",
                                     "fix teacher.model_name")
            self._checked = True

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _redacting(self):
        """Errors leave without the API key, even where the server quoted it back in its reply."""
        try:
            yield
        except ModelError as exc:
            key = self._clients[0].api_key if self._uses_key else ""
            if not key or (key not in str(exc) and key not in exc.remedy):
                raise
            raise type(exc)(str(exc).replace(key, "<api key>"), exc.remedy.replace(key, "<api key>")) from None

    @staticmethod
    def _kwargs(params: SamplingParams) -> dict:
        kwargs = dict(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    def _client(self, attempt_offset: int = 0):
        i = next(self._next) % len(self._clients)
        return self.urls[i], self._clients[i]

    def _run(self, call, on_token, cancel, chat: bool) -> Completion:
        if not self._checked:
            self.check()
        openai = self._openai
        delay = 0.5
        last = None
        for attempt in range(self.max_retries + 1):
            if cancel is not None and cancel.is_set():
                return Completion("", "cancelled")
            url, client = self._client()
            streamed = []
            try:
                return self._drain(call(client), on_token, cancel, chat, streamed)
            except (openai.APIConnectionError, openai.APITimeoutError, _Incomplete) as exc:
                last = (url, exc)
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status == 404:
                    raise ModelError(f"{url}: the server has no model {self.model_name!r} or no "
                                     f"{'chat ' if chat else ''}completions endpoint (404)",
                                     "fix teacher.model_name or teacher.mode") from None
                if status in (401, 403):
                    raise ModelError(f"{url}: the server refused the API key ({status})",
                                     "check the variable named by teacher.api_key_env") from None
                if status not in _RETRY_STATUS:
                    raise ModelError(f"{url}: the server rejected the request ({status}): "
                                     f"{_short(exc)}") from None
                last = (url, exc)
                retry_after = _retry_after(exc)
                if retry_after is not None:
                    delay = max(delay, retry_after)
            if streamed and on_token is not None:
                # Text already shown cannot be taken back: say so rather than show it twice.
                raise ModelError(f"{url}: the answer broke off midway ({_reason(last[1])})",
                                 "llama-cpp-python's server interrupts a streaming answer when another "
                                 "request arrives unless started with --interrupt_requests false")
            if attempt < self.max_retries:
                self._sleep(min(delay, 20.0) * (0.75 + 0.5 * random.random()))
                delay *= 2
        url, exc = last
        raise ModelError(f"{url}: no answer after {self.max_retries + 1} tries ({_reason(exc)})",
                         "is the server running and reachable? raise teacher.timeout for slow servers")

    def _drain(self, stream, on_token, cancel, chat: bool, streamed: list) -> Completion:
        usage = None

        def read(chunk):
            nonlocal usage
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            if not chunk.choices:
                return None
            choice = chunk.choices[0]
            return (choice.delta.content if chat else choice.text) or "", choice.finish_reason

        out = drain(stream, read, on_token, cancel, pieces=streamed)
        if out.finish_reason is None:
            raise _Incomplete("the stream ended without a finish reason")
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or len(out.pieces)
        finish = out.finish_reason if out.finish_reason in ("stop", "length", "cancelled") else "stop"
        return Completion(out.text, finish, prompt_tokens, completion_tokens, out.seconds,
                          out.first_token_seconds)


def _retry_after(exc) -> Optional[float]:
    try:
        value = exc.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _short(exc) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(str(text).split())[:200]


def _reason(exc) -> str:
    cause = exc
    while getattr(cause, "__cause__", None) is not None:
        cause = cause.__cause__
    if "timed out" in str(exc).lower() or type(exc).__name__.endswith("TimeoutError"):
        return "timed out"
    if isinstance(exc, _Incomplete):
        return str(exc)
    text = " ".join(str(cause).split()) or type(cause).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:160]
