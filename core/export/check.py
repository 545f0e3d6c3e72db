"""How good each exported GGUF is: the test set goes through the merged model (transformers) once and
through every GGUF (llama.cpp), greedily, scored with the task's headline metric. The quant table made of
it (quants.md, quants.json) gives each GGUF's size, llama.cpp tokens/s, score next to the merged model's
and share of answers identical to the merged model's, so the user can pick the smallest that keeps
the score."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .. import metrics, records
from ..backends.base import SamplingParams
from ..events import EventSink, ExportProgress, Status, ignore
from ..fsio import atomic_write_text
from ..project import Project
from ..tasks import task_kind
from .files import ExportError, check_cancel

K_QUANTS = ("q4_k_m", "q5_k_m", "q6_k")


def check_ggufs(project: Project, ggufs: dict[str, Path], merged: Path, *, limit: Optional[int] = None,
                on_event: EventSink = ignore, cancel: Optional[threading.Event] = None) -> dict:
    """Every GGUF in `ggufs` ({quant: path}) and the merged model on the test set: the merged model's
    score, each GGUF's score, agreement and speed, and every answer side by side."""
    from ..evaluate import student_messages, test_rows
    config = project.config
    tests = test_rows(project, limit)
    params = SamplingParams(temperature=0.0, max_tokens=config.evaluation.max_tokens)
    convs = [student_messages(r, config.task.system_prompt) for r in tests]
    refs = [records.answer_text(r) for r in tests]
    headline, score_one = _headline_scorer(config)

    def score(answers: list[str]) -> float:
        return metrics.mean([score_one(a, r) for a, r in zip(answers, refs)])

    answers: dict[str, list[str]] = {}
    answers["merged"], merged_seconds = _answer_merged(project, merged, convs, params, on_event, cancel)
    quants = {}
    for quant, path in ggufs.items():
        answers[quant], seconds, tokens = _answer_gguf(project, path, convs, params, on_event, cancel)
        quants[quant] = {"file": path.name, "gguf": score(answers[quant]),
                         "agreement": _agreement(answers["merged"], answers[quant]),
                         "seconds": round(seconds, 2), "tokens": tokens,
                         "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else 0.0}
    return {"metric": headline, "examples": len(tests), "merged": score(answers["merged"]),
            "seconds": {"merged": round(merged_seconds, 2)}, "quants": quants,
            "answers": [{"input": records.user_text(t), "reference": r, **{k: v[i] for k, v in answers.items()}}
                        for i, (t, r) in enumerate(zip(tests, refs))]}


def _headline_scorer(config) -> tuple[str, Callable[[str, str], float]]:
    """The task's headline metric (a judge headline falls back to the task's own metric: the check runs no
    judge) and the function that scores one answer against its reference with it."""
    kind = task_kind(config.task)
    headline = kind.headline_metric(config.evaluation.headline)
    if headline == "judge":
        headline = kind.headline
    return headline, lambda answer, reference: kind.score_example(answer, reference)[headline]


def _agreement(merged: list[str], other: list[str]) -> float:
    same = sum(1 for a, b in zip(merged, other) if metrics.normalize_answer(a) == metrics.normalize_answer(b))
    return same / len(merged) if merged else 0.0


def _answer_merged(project: Project, merged: Path, convs: list, params: SamplingParams, on_event: EventSink,
                   cancel: Optional[threading.Event]) -> tuple[list[str], float]:
    from ..backends.hf import HFModel
    from ..device import pick_device
    config = project.config
    on_event(Status("checking the merged model on the test set"))
    model = HFModel.from_folder(merged, device=pick_device(config.evaluation.device))
    start = time.perf_counter()
    try:
        out = []
        for i in range(0, len(convs), config.evaluation.batch_size):
            check_cancel(cancel)
            out += model.chat_batch(convs[i:i + config.evaluation.batch_size], params, cancel=cancel)
            on_event(ExportProgress("checking merged", len(out), len(convs)))
    finally:
        model.close()
    return [c.text.strip() for c in out], time.perf_counter() - start


def _answer_gguf(project: Project, gguf: Path, convs: list, params: SamplingParams, on_event: EventSink,
                 cancel: Optional[threading.Event]) -> tuple[list[str], float, int]:
    """The GGUF's answers through llama.cpp, the seconds spent answering (after a one-token warm-up) and
    the tokens answered."""
    from ..backends.llamacpp import LlamaCppModel
    config = project.config
    on_event(Status(f"checking {gguf.name} with llama.cpp on the test set"))
    llm = LlamaCppModel(gguf, name=gguf.stem, n_ctx=max(2048, config.teacher.n_ctx),
                        n_threads=config.teacher.n_threads, n_gpu_layers=config.teacher.n_gpu_layers,
                        is_base=False, cpu_repack=config.teacher.cpu_repack)
    seconds, tokens, out = 0.0, 0, []
    try:
        if not llm.supports_chat:
            raise ExportError(f"{gguf}: the GGUF carries no chat template")
        if convs:       # llama.cpp sets up its buffers on the first answer: not part of the speed
            llm.chat(convs[0], dataclasses.replace(params, max_tokens=1), cancel=cancel)
        for conv in convs:
            check_cancel(cancel)
            start = time.perf_counter()
            completion = llm.chat(conv, params, cancel=cancel)
            seconds += time.perf_counter() - start
            tokens += completion.completion_tokens
            out.append(completion.text.strip())
            on_event(ExportProgress(f"checking {gguf.name}", len(out), len(convs)))
    finally:
        llm.close()
    return out, seconds, tokens


def quant_check(report: dict, quant: str) -> dict:
    """One GGUF's check out of `check_ggufs`' report: its score and agreement next to the merged model's,
    and both answers to each test row (gguf-check.json)."""
    q = report["quants"][quant]
    return {"metric": report["metric"], "examples": report["examples"], "merged": report["merged"],
            "gguf": q["gguf"], "agreement": q["agreement"], "quant": quant, "tokens_per_s": q["tokens_per_s"],
            "seconds": {"merged": report["seconds"]["merged"], "gguf": q["seconds"]},
            "answers": [{"input": a["input"], "reference": a["reference"], "merged": a["merged"],
                         "gguf": a[quant]} for a in report["answers"]]}


def check_gguf(project: Project, gguf: Path, merged: Path, *, limit: Optional[int] = None,
               on_event: EventSink = ignore, cancel: Optional[threading.Event] = None) -> dict:
    """Run the test set through the GGUF (llama.cpp) and the merged model (transformers), greedily, and
    score both with the task's headline metric."""
    report = check_ggufs(project, {"gguf": gguf}, merged, limit=limit, on_event=on_event, cancel=cancel)
    return quant_check(report, "gguf")


# ---------------------------------------------------------------- the quant table

def fallback_tensors(gguf: Path, quant: str) -> tuple[int, int]:
    """(weight tensors not in a K-quant type, weight tensors) of a K-quant GGUF: llama.cpp writes a
    tensor whose rows are not a multiple of 256 in a fallback type. (0, n) for other types."""
    import gguf as gguf_format
    weights = [t for t in gguf_format.GGUFReader(gguf).tensors if sum(1 for d in t.shape if d > 1) >= 2]
    if quant not in K_QUANTS:
        return 0, len(weights)
    return sum(1 for t in weights if not t.tensor_type.name.endswith("_K")), len(weights)


def quant_table(report: dict, ggufs: dict[str, Path], merged: Path) -> dict:
    """quants.json: the merged model's size and score, and a row per GGUF, smallest first."""
    rows = []
    for quant, path in ggufs.items():
        q = report["quants"][quant]
        fallback, weights = fallback_tensors(path, quant)
        rows.append({"quant": quant, "file": path.name, "size_bytes": path.stat().st_size,
                     "tokens_per_s": q["tokens_per_s"], "score": q["gguf"], "agreement": q["agreement"],
                     "fallback_tensors": fallback, "weight_tensors": weights})
    rows.sort(key=lambda r: r["size_bytes"])
    size = sum(p.stat().st_size for p in merged.glob("*.safetensors"))
    return {"metric": report["metric"], "examples": report["examples"],
            "merged": {"folder": merged.name, "size_bytes": size, "score": report["merged"]}, "rows": rows}


def fmt_size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def table_columns(table: dict) -> list[str]:
    return ["quant", "size", "llama.cpp tok/s", table["metric"], "vs merged", "same answers"]


def table_cells(table: dict) -> list[list[str]]:
    """The table's rows as text: the merged model first, then each GGUF, smallest first."""
    merged = table["merged"]
    cells = [["merged", fmt_size(merged["size_bytes"]), "–", f"{merged['score']:.3f}", "", "–"]]
    for row in table["rows"]:
        cells.append([row["quant"], fmt_size(row["size_bytes"]), f"{row['tokens_per_s']:.1f}",
                      f"{row['score']:.3f}", f"{row['score'] - merged['score']:+.3f}",
                      f"{row['agreement'] * 100:.0f}%"])
    return cells


def table_notes(table: dict) -> list[str]:
    """A line per K-quant GGUF that llama.cpp could not write wholly in K-quant blocks."""
    return [f"{row['quant']}: {row['fallback_tensors']} of {row['weight_tensors']} weight tensors are in a "
            f"fallback type (rows not a multiple of 256)" for row in table["rows"] if row["fallback_tensors"]]


def table_markdown(table: dict, run_id: str) -> str:
    columns, cells = table_columns(table), table_cells(table)
    lines = [f"# GGUF quants of run {run_id}", "",
             f"Checked on {table['examples']} test rows, greedy answers; {table['metric']} is the task's "
             f"headline metric, \"same answers\" the share identical to the merged model's.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    notes = table_notes(table)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_check(out_dir: Path, run_id: str, report: dict, ggufs: dict[str, Path], merged: Path,
                chosen: str) -> tuple[dict, dict]:
    """gguf-check.json (the chosen GGUF's check), quants.json (the table and every answer) and quants.md;
    returns the chosen GGUF's check and the table."""
    check = quant_check(report, chosen)
    atomic_write_text(out_dir / "gguf-check.json", json.dumps({**check, "gguf_file": ggufs[chosen].name},
                                                              indent=1, ensure_ascii=False) + "\n")
    table = quant_table(report, ggufs, merged)
    atomic_write_text(out_dir / "quants.json", json.dumps({"run": run_id, **table, "answers": report["answers"]},
                                                          indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out_dir / "quants.md", table_markdown(table, run_id))
    return check, table
