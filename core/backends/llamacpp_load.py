"""The one place a GGUF file is opened for llama.cpp, and the load settings that keep it safe.

Every llama.cpp model Stillroom loads (the teacher, its label scorer, the batched engine's weights,
chat, the check of an exported GGUF, the benchmarks and the tests) comes from `open_gguf`; nothing else
constructs `llama_cpp.Llama`. llama-cpp-python's OpenAI-compatible server, which the benchmarks and
tests start, constructs its own, so it is started as `python -m stillroom.core.backends.llamacpp_load
[--cpu-repack X] SERVER-ARGS` to load under the same settings.

Why it exists: on CPUs with Intel AMX (Sapphire Rapids and later) llama.cpp repacks Q4_K weights into
an "AMX" extra buffer type and then segfaults in `ggml_backend_amx_mul_mat` (ggml-org/llama.cpp#20824,
closed without a fix). Loading with `llama_model_params.use_extra_bufts = False` keeps the weights in
their plain CPU buffers and runs correctly. `cpu_repack` ("auto" | "on" | "off") chooses: "auto" turns
repacking off exactly where llama.cpp reports AMX, and leaves it on elsewhere, where it speeds up some
quant types (Q4_0, IQ4_NL) on AVX2 and ARM.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

CPU_REPACK = ("auto", "on", "off")

_params_lock = threading.Lock()


def system_info() -> str:
    """llama.cpp's own report of the CPU features it was built for and found ("AMX_INT8 = 1 | ...")."""
    import llama_cpp
    info = llama_cpp.llama_print_system_info()
    return info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)


def has_amx(info: str) -> bool:
    return "AMX_INT8 = 1" in info


def repack_enabled(cpu_repack: str = "auto", info: str | None = None) -> bool:
    """Whether llama.cpp may repack weights into extra CPU buffer types (see the module docstring)."""
    if cpu_repack not in CPU_REPACK:
        raise ValueError(f"cpu_repack must be one of {', '.join(CPU_REPACK)}, not {cpu_repack!r}")
    if cpu_repack != "auto":
        return cpu_repack == "on"
    return not has_amx(system_info() if info is None else info)


@contextmanager
def load_settings(cpu_repack: str = "auto"):
    """While active, every `llama_cpp.Llama(...)` loads its weights with repacking as `cpu_repack` decides.

    `Llama(...)` takes no argument for extra buffer types: it builds its model parameters from
    `llama_cpp.llama_model_default_params()`, so that function is wrapped here to return defaults with
    `use_extra_bufts` set. A lock keeps two loads in two threads from seeing each other's wrapper.
    """
    import llama_cpp.llama_cpp as lc

    repack = repack_enabled(cpu_repack)
    with _params_lock:
        defaults = lc.llama_model_default_params

        def model_params():
            params = defaults()
            params.use_extra_bufts = repack
            return params

        lc.llama_model_default_params = model_params
        try:
            yield repack
        finally:
            lc.llama_model_default_params = defaults


def open_gguf(path: Path | str, *, cpu_repack: str = "auto", **llama_kwargs):
    """A `llama_cpp.Llama` over the GGUF at `path`; `llama_kwargs` go to `Llama(...)` as they are."""
    from llama_cpp import Llama
    with load_settings(cpu_repack):
        return Llama(model_path=str(path), **llama_kwargs)


def serve_main(argv: list[str]) -> None:
    """`python -m llama_cpp.server ARGS` with the load settings above (`--cpu-repack X` first, optional):
    llama-cpp-python's server constructs its own `Llama`, so the settings are applied around it."""
    import runpy
    import sys
    cpu_repack = "auto"
    if argv[:1] == ["--cpu-repack"]:
        cpu_repack, argv = argv[1], argv[2:]
    with load_settings(cpu_repack):
        sys.argv = ["llama_cpp.server", *argv]
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    import sys
    serve_main(sys.argv[1:])
