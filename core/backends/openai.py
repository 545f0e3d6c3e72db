"""Any OpenAI-compatible server as a teacher: llama.cpp's server, vLLM, Ollama, LM Studio, a hosted API.

One or more base URLs (`teacher.model = "openai:<url>"` plus `teacher.servers`) serving the same model
are used round-robin; requests are streamed (cancel works mid-answer), time out after
`teacher.timeout` seconds, and are retried with exponential backoff and jitter on 429, 5xx,
timeouts and refused connections (the next try goes to the next server). A wrong model name or an
unreachable server is one clear `ModelError`.

Some servers cut a streaming answer short whenever another request arrives (llama-cpp-python's server
does unless started with `--interrupt_requests False`). When an answer ends without a finish reason
while other requests were running on the same server, that server is given fewer requests at once
(halved, down to 1), the answer is asked again without counting as a failed try, and the reason is
logged and kept in `concurrency_note` for the caller's progress line. The API key is read from the environment variable
*named* by `teacher.api_key_env`, at load time; it is never stored, logged or put in an error.

The `openai` client library is imported here only, when an openai teacher is loaded.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from ..errors import ModelError
from .base import Completion, SamplingParams, TokenCallback
from .streaming import drain

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_INTERRUPTS_HINT = ("the server interrupts a streaming answer when another request arrives "
                    "(llama-cpp-python's server does unless started with --interrupt_requests False)")
log = logging.getLogger("stillroom.teacher")


class _Incomplete(Exception):
    """The stream ended without a finish reason: the server dropped or interrupted the answer."""


@dataclass
class _Server:
    url: str
    client: object
    limit: int            # requests it is given at once; falls when it cuts concurrent streams
    active: int = 0
    started: int = 0      # requests ever started on it: a change during a request means they overlapped


@dataclass(frozen=True)
class _Slot:
    """One request's place on a server, and what it saw there when it started."""
    server: _Server
    started: int
    shared: bool          # another request was running on the server when this one started
    limit: int


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
        self.max_in_flight = max(1, int(config.max_in_flight))
        self.concurrency_note = ""     # why a server was given fewer requests at once, when it was
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
        self._servers = [_Server(url, client, self.max_in_flight) for url, client in zip(self.urls, self._clients)]
        self._slots = threading.Condition()
        self._next = itertools.count()
        self._checked = False
        self._check_lock = threading.Lock()
        self._sleep = sleep

    # ------------------------------------------------------------------ protocol
    def complete(self, prompt: str, params: SamplingParams, on_token: Optional[TokenCallback] = None,
                 cancel: Optional[threading.Event] = None) -> Completion:
        def call(client):
            return client.completions.create(model=self.model_name, prompt=prompt, stream=True,
                                             **self._kwargs(params, chat=False))
        with self._redacting():
            return self._run(call, on_token, cancel, chat=False)

    def chat(self, messages: Sequence[dict], params: SamplingParams,
             on_token: Optional[TokenCallback] = None,
             cancel: Optional[threading.Event] = None) -> Completion:
        def call(client):
            return client.chat.completions.create(model=self.model_name, messages=list(messages),
                                                  stream=True, **self._kwargs(params, chat=True))
        with self._redacting():
            return self._run(call, on_token, cancel, chat=True)

    @property
    def max_concurrency(self) -> int:
        """Requests worth keeping in flight: teacher.max_in_flight, or fewer once a server cut
        concurrent streams."""
        return max(1, min(self.max_in_flight, sum(server.limit for server in self._servers)))

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
    def _kwargs(params: SamplingParams, chat: bool) -> dict:
        kwargs = dict(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p)
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.top_logprobs:
            # The chat API caps top_logprobs at 20; the legacy completions API takes logprobs=k.
            kwargs.update(dict(logprobs=True, top_logprobs=min(params.top_logprobs, 20)) if chat
                          else dict(logprobs=params.top_logprobs))
        return kwargs

    def _acquire(self, cancel) -> Optional[_Slot]:
        """The next server in turn with room for one more request (waiting for one if none has);
        None when cancelled while waiting."""
        with self._slots:
            while True:
                start = next(self._next)
                for k in range(len(self._servers)):
                    server = self._servers[(start + k) % len(self._servers)]
                    if server.active < server.limit:
                        server.active += 1
                        server.started += 1
                        return _Slot(server, server.started, server.active > 1, server.limit)
                if cancel is not None and cancel.is_set():
                    return None
                self._slots.wait(0.2)

    def _release(self, slot: _Slot) -> None:
        with self._slots:
            slot.server.active -= 1
            self._slots.notify_all()

    def _lower(self, slot: _Slot) -> bool:
        """After an answer cut short: when other requests ran on the same server meanwhile, give that
        server fewer at once and say so. True when the cut is put down to the overlap (the answer is
        asked again without counting a try)."""
        with self._slots:
            server = slot.server
            overlapped = slot.shared or server.started != slot.started
            if not overlapped or slot.limit <= 1:
                return False
            if server.limit < slot.limit:
                return True            # another cut answer has lowered it already
            before = server.limit
            server.limit = max(1, min(server.limit, server.active) // 2)
            self.concurrency_note = (f"teacher lowered to {server.limit} request"
                                     f"{'s' if server.limit > 1 else ''} at a time: {server.url} cut answers "
                                     f"short with {before} at once (it interrupts concurrent streams)")
        log.warning("%s", self.concurrency_note)
        return True

    def _run(self, call, on_token, cancel, chat: bool) -> Completion:
        if not self._checked:
            self.check()
        openai = self._openai
        delay = 0.5
        last = None
        attempt = 0
        while attempt <= self.max_retries:
            if cancel is not None and cancel.is_set():
                return Completion("", "cancelled")
            slot = self._acquire(cancel)
            if slot is None:
                return Completion("", "cancelled")
            url, client = slot.server.url, slot.server.client
            streamed = []
            try:
                return self._drain(call(client), on_token, cancel, chat, streamed)
            except _Incomplete as exc:
                last = (url, exc)
                if not streamed or on_token is None:
                    if self._lower(slot):
                        continue
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
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
            finally:
                self._release(slot)
            if streamed and on_token is not None:
                # Text already shown cannot be taken back: say so rather than show it twice.
                raise ModelError(f"{url}: the answer broke off midway ({_reason(last[1])})",
                                 "llama-cpp-python's server interrupts a streaming answer when another "
                                 "request arrives unless started with --interrupt_requests False")
            if attempt < self.max_retries:
                self._sleep(min(delay, 20.0) * (0.75 + 0.5 * random.random()))
                delay *= 2
            attempt += 1
        url, exc = last
        if isinstance(exc, _Incomplete):
            raise ModelError(f"{url}: no answer after {self.max_retries + 1} tries ({_reason(exc)})",
                             self._incomplete_remedy())
        raise ModelError(f"{url}: no answer after {self.max_retries + 1} tries ({_reason(exc)})",
                         "is the server running and reachable? raise teacher.timeout for slow servers")

    def _incomplete_remedy(self) -> str:
        if self.max_concurrency > 1:
            return f"{_INTERRUPTS_HINT}; start it with --interrupt_requests False or set teacher.max_in_flight = 1"
        return (f"{_INTERRUPTS_HINT}; answers were cut even one at a time, so another client may be using "
                f"the server: start it with --interrupt_requests False, or look at the server's log")

    def _drain(self, stream, on_token, cancel, chat: bool, streamed: list) -> Completion:
        usage = None
        logprobs: list = []

        def read(chunk):
            nonlocal usage
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            if not chunk.choices:
                return None
            choice = chunk.choices[0]
            logprobs.extend(_top_logprobs(getattr(choice, "logprobs", None), chat))
            return (choice.delta.content if chat else choice.text) or "", choice.finish_reason

        out = drain(stream, read, on_token, cancel, pieces=streamed)
        if out.finish_reason is None:
            raise _Incomplete("the stream ended without a finish reason")
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or len(out.pieces)
        finish = out.finish_reason if out.finish_reason in ("stop", "length", "cancelled") else "stop"
        return Completion(out.text, finish, prompt_tokens, completion_tokens, out.seconds,
                          out.first_token_seconds, top_logprobs=logprobs or None)


def _top_logprobs(logprobs, chat: bool) -> list[dict]:
    """A streamed chunk's log-probabilities as one {token text: log-probability} per generated token
    (the format llama.cpp's completions use); [] when the server sent none."""
    if logprobs is None:
        return []
    if chat:
        return [{alt.token: alt.logprob for alt in (getattr(item, "top_logprobs", None) or [])}
                or {item.token: item.logprob} for item in (getattr(logprobs, "content", None) or [])]
    return [dict(top) for top in (getattr(logprobs, "top_logprobs", None) or []) if top]


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
