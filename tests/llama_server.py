"""llama-cpp-python's OpenAI-compatible server on a free loopback port: the benchmarks' helper
(bench/_server.py), shared with the tests rather than copied."""
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))   # last: its module names stay out of the way

from _server import LlamaServer, free_port  # noqa: E402,F401
