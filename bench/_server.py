"""Start and stop llama-cpp-python's own OpenAI-compatible server on a free loopback port (the tests
use this helper too)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1 only; stop() ends exactly the process it started."""

    def __init__(self, model: Path, port: int | None = None, alias: str = "smollm2", n_ctx: int = 1024,
                 log: Path | None = None, threads: int = 0, interrupt_requests: bool | None = False):
        """`interrupt_requests` None starts the server with its own default (True: a streaming answer
        is cut short whenever another request arrives), as a user who passes no flags does."""
        self.model, self.alias, self.n_ctx, self.log, self.threads = model, alias, n_ctx, log, threads
        self.interrupt_requests = interrupt_requests
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, wait: float = 90.0) -> "LlamaServer":
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        # llama-cpp-python's server, loading its model with Stillroom's llama.cpp load settings
        cmd = [sys.executable, "-m", "stillroom.core.backends.llamacpp_load", "--model", str(self.model), "--model_alias",
               self.alias, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               "--verbose", "False"]
        if self.interrupt_requests is not None:
            # its default (True) cuts a streaming answer short whenever another request arrives
            cmd += ["--interrupt_requests", str(self.interrupt_requests)]
        if self.threads:
            cmd += ["--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer on {self.url} within {wait:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
