"""The student model: where its weights live and how it loads (on the device and in the precision that
core.device chooses).

A student reference is a Hugging Face model folder (safetensors) or a GGUF file (including
`bundled:smollm2-135m-instruct`). transformers de-quantizes a GGUF once; the result is kept as a
safetensors folder in the cache (`<cache>/students/<key>`, keyed by the file's size and a hash of its
first bytes), so later loads take about a second instead of tens of seconds.

torch, transformers and peft are imported inside the functions that need them.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from . import locations
from .device import pick_device, pick_precision, torch_dtype
from .errors import ModelError
from .events import EventSink, Status, ignore
from .models import check_hf_folder, resolve

# Bytes of a GGUF file read for its cache key (with the size, enough to tell files apart cheaply).
KEY_PREFIX_BYTES = 16 << 20
CONVERTER_VERSION = "1"


# ---------------------------------------------------------------- quiet transformers

def quiet_transformers() -> None:
    """No tqdm bars or info chatter from transformers: the CLI and the TUI draw their own progress.
    Also: nothing is fetched from a model hub (set before huggingface_hub reads its settings)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import huggingface_hub.utils as hub_utils
        hub_utils.disable_progress_bars()
    except Exception:  # pragma: no cover - older hub
        pass


# ---------------------------------------------------------------- precision

def _as_dtype(dtype: Any, device: str):
    """None/'auto' → the automatic choice; a precision name or a torch dtype as given."""
    if dtype is None or isinstance(dtype, str):
        return torch_dtype(pick_precision(device, dtype or "auto"))
    return dtype


# ---------------------------------------------------------------- GGUF → safetensors cache

def gguf_cache_key(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    digest.update(f"stillroom-student-v{CONVERTER_VERSION}:{size}:".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(KEY_PREFIX_BYTES))
    return digest.hexdigest()[:32]


def students_cache() -> Path:
    return locations.cache_dir() / "students"


def _complete(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors")) and \
        (folder / "tokenizer_config.json").exists()


def student_folder(ref: str, *, project_dir: Path | None = None, on_event: EventSink | None = None) -> Path:
    """A Hugging Face folder for `ref`: the folder itself, or the cached de-quantized copy of a GGUF."""
    on_event = on_event or ignore
    model = resolve(ref, project_dir=project_dir)
    if model.kind == "openai":
        raise ModelError(f"{ref!r}: a student must be a local model (a Hugging Face folder or a GGUF file), "
                         f"not a server")
    if model.kind == "hf":
        return model.path
    gguf = Path(model.path)
    key = gguf_cache_key(gguf)
    target = students_cache() / key
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time (two training processes may start together); the others wait, then reuse.
    with _file_lock(target.parent / f".{key}.lock"):
        if _complete(target):
            return target
        on_event(Status(f"converting {gguf.name} to a trainable safetensors model (once; cached)"))
        _convert_gguf(gguf, target)
    on_event(Status(f"student cached at {target}"))
    return target


class _file_lock:
    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+")
        try:
            import fcntl
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no lock, the rename still keeps folders whole
            pass
        return self

    def __exit__(self, *exc):
        try:
            import fcntl
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        except ImportError:  # pragma: no cover
            pass
        self.handle.close()


def _convert_gguf(gguf: Path, target: Path) -> None:
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tmp = target.with_name(f".{target.name}.partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                         local_files_only=True)
        except (ValueError, KeyError, RuntimeError, OSError, NotImplementedError) as exc:
            raise ModelError(f"{gguf}: transformers cannot load this GGUF as a trainable model: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                             "use a Hugging Face safetensors folder of the same model") from None
        # A GGUF-loaded model keeps its quantizer attached and refuses to save until it is detached;
        # the weights are already plain de-quantized tensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "stillroom-source.txt").write_text(f"{gguf}\n", encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:
            if not _complete(target):
                raise
    except OSError as exc:
        raise ModelError(f"{target}: could not write the converted student: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- loading

def _project_student_config(project_dir: Path | None):
    if project_dir is None:
        return None
    config_path = Path(project_dir) / "stillroom.toml"
    if not config_path.exists():
        return None
    from .config import load_config
    return load_config(config_path).student


def load_tokenizer(folder: Path, *, chat_template: str = "", trust_remote_code: bool = False,
                   for_training: bool = False, what: str = ""):
    quiet_transformers()
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                  trust_remote_code=trust_remote_code)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{folder}: cannot load the tokenizer: {str(exc).splitlines()[0]}") from None
    if chat_template:
        tokenizer.chat_template = chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{what or folder}: the student has no chat template, and student.chat_template "
                         f"is empty in stillroom.toml",
                         "set student.chat_template to a Jinja chat template, or use an instruct model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    # Batched generation pads on the left; training pads on the right.
    tokenizer.padding_side = "right" if for_training else "left"
    return tokenizer


def load_student(ref: str, *, project_dir: Path | None = None, adapter: Path | None = None,
                 device: str = "auto", dtype=None, for_training: bool = False,
                 chat_template: str | None = None, trust_remote_code: bool | None = None,
                 on_event: EventSink | None = None):
    """Load (model, tokenizer) for `ref`, optionally with a LoRA adapter folder on top.

    `chat_template` and `trust_remote_code` default to the project's [student] settings when
    `project_dir` holds a stillroom.toml. `dtype`: None/"auto" picks bf16 on a capable CUDA GPU, fp32
    elsewhere; or "fp32"/"bf16"/"fp16"/a torch dtype. Weights load from safetensors only.
    """
    settings = _project_student_config(project_dir)
    if chat_template is None:
        chat_template = settings.chat_template if settings else ""
    if trust_remote_code is None:
        trust_remote_code = settings.trust_remote_code if settings else False
    folder = student_folder(ref, project_dir=project_dir, on_event=on_event)
    check_hf_folder(folder)
    if trust_remote_code:
        warnings.warn(f"{folder}: student.trust_remote_code is on; Python code shipped with this model "
                      f"folder will run", UserWarning, stacklevel=2)
    tokenizer = load_tokenizer(folder, chat_template=chat_template, trust_remote_code=trust_remote_code,
                               for_training=for_training, what=ref)
    device = pick_device(device)
    torch_dt = _as_dtype(dtype, device)
    quiet_transformers()
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dt, local_files_only=True,
                                                     use_safetensors=True,
                                                     trust_remote_code=trust_remote_code)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{folder}: cannot load the student: {str(exc).splitlines()[0]}") from None
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter is not None:
        model = attach_adapter(model, Path(adapter), trainable=for_training)
    model.to(device)
    if for_training:
        model.train()
    else:
        model.eval()
    return model, tokenizer


def attach_adapter(model, adapter: Path, *, trainable: bool = False):
    if not (adapter / "adapter_config.json").exists():
        raise ModelError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    if not (adapter / "adapter_model.safetensors").exists():
        unsafe = [p.name for p in adapter.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
        raise ModelError(f"{adapter}: adapter has no adapter_model.safetensors"
                         + (f" (found pickle weights {', '.join(unsafe)}, which Stillroom does not load)"
                            if unsafe else ""))
    from peft import PeftModel
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise ModelError(f"{adapter}: cannot load the adapter onto this student: "
                         f"{str(exc).splitlines()[0]}") from None
