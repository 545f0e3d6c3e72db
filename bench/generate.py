"""Teacher throughput: Stillroom's generation pipeline against a plain llama-cpp-python loop.

Same model (the bundled Gemma 3 270M teacher), same prompts, same sampling settings, one run. The
pipeline writes rows for the demo tickets as a `qa` task (both the new input and its answer are
sampled text, so every teacher second is token generation, as in the plain loop); a recording wrapper
keeps every prompt and setting the pipeline sent, and the plain loop replays exactly those through
`Llama.create_completion`. Then the pipeline runs again with K candidates in flight on the batched
llama.cpp engine, with and without prompt-prefix reuse between candidates (the candidates of a shot
group share all few-shot examples but the last, and its answer prompts show the same examples, so
most of each prompt is a prefix the engine has already evaluated in some slot).

The batched run samples with the same seeds and settings, but its prompts are evaluated in different
chunks (a cached prefix, then the rest), and llama.cpp's kernels round chunks of different sizes
differently: the sampled texts, and so their lengths and the rows they yield, differ from the K=1 run.
Tokens/s compares the engines; rows/s also carries that difference.

Each side runs in a fresh process, as a `stillroom generate` run does: llama.cpp's OpenMP thread
team belongs to the thread that calls it, and a process whose llama.cpp work had moved from one thread
(the K=1 run's) to another (the batched engine's) ran its batched side about 20% slower.

    python bench/generate.py [--rows 32] [--k 8] [--threads N] [--cpu-repack auto|on|off]
    python bench/generate.py --repack-compare      # llama.cpp weight repacking: on against off
    python bench/generate.py --logprobs-compare 8  # the cost of keeping the teacher's top-8 per answer token

--cpu-repack is the load setting of every side (teacher.cpu_repack: extra CPU buffer types with
repacked weights). --repack-compare records the K=1 pipeline's requests once, then replays them through
the plain loop with repacking on and off, alternating, twice each.

--logprobs-compare K measures what generation.teacher_logprobs = K costs, with the bundled SmolLM2 as
the teacher (the one that shares the bundled student's tokenizer): it answers the demo's held-out
inputs with generation's answer prompt, greedily, with and without the teacher-forced top-k pass that
follows each kept answer (Stillroom's way: a second context with logits_all scores the answer); and, for
reference, llama-cpp-python's own logprobs (logits_all on the generating context, top-K per generated
token) against none, over the same requests. Each side twice, interleaved. Answers only: writing new
inputs, which the pass does not touch, is most of a real run's teacher time, so this is the upper bound
of the cost. Ends with: RATIOS logprobs: answers=<answers/s with the pass / without> logits_all=...

--threads sets llama.cpp's CPU threads for both sides (default: all cores). On a machine shared with
other work, 1 thread avoids llama.cpp's spinning thread barriers stalling on a busy core.

Ends with: RATIOS generate: single=<pipeline/plain tok/s, K=1> batched=<pipeline K / plain> ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (paths, offline)
from _common import Timer, machine, ratios


class Recording:
    """Forwards to the teacher, keeping each completion request (prompt and settings)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def complete(self, prompt, params, on_token=None, cancel=None):
        self.calls.append((prompt, params))
        return self.inner.complete(prompt, params, on_token=on_token, cancel=cancel)

    def chat(self, messages, params, on_token=None, cancel=None):
        self.calls.append((list(messages), params))
        return self.inner.chat(messages, params, on_token=on_token, cancel=cancel)


def make_project(folder: Path, k: int, rows_cfg: dict):
    from stillroom.core.project import Project
    project = Project.create(folder, demo=True)
    cfg = project.config
    cfg.task.type = "qa"
    cfg.teacher.max_in_flight = k
    for key, value in rows_cfg.items():
        setattr(cfg.generation, key, value)
    cfg.generation.max_attempts_factor = 50
    project.save_config()
    return Project.open(project.root)


THREADS = 0
CPU_REPACK = "auto"
SETTINGS = dict(max_input_tokens=48, max_output_tokens=32, seed=0)   # the pipeline's generation settings


def run_pipeline(folder, k, rows, settings, model_path, *, prefix_cache=True):
    from stillroom.core.backends.llamacpp import LlamaCppModel
    from stillroom.core.generate import generate
    project = make_project(folder, k, settings)
    teacher = LlamaCppModel(model_path, name="gemma-3-270m", is_base=True, parallel=k, n_threads=THREADS,
                            cpu_repack=CPU_REPACK)
    teacher.prefix_cache = prefix_cache
    import datasketch  # noqa: F401  (the dedup index's library: imported before the clock, as the model is loaded)
    if k > 1:   # start the engine (its context) before the clock, as the model load is
        teacher.complete_batch(["warm up"], settings_params(1))
        teacher._engine.prompt_tokens_evaluated = 0
    recording = Recording(teacher)
    with Timer() as t:
        result = generate(project, rows, teacher=recording)
    engine = teacher._engine
    evaluated = engine.prompt_tokens_evaluated if engine is not None else None
    teacher.close()
    tokens = result.teacher_tokens
    return dict(seconds=t.seconds, tokens=tokens, tps=tokens / t.seconds, rows=result.kept,
                candidates=result.kept + result.rejected, rows_per_s=result.kept / t.seconds,
                calls=recording.calls, prompt_tokens=sum(teacher_prompt_tokens(model_path, recording.calls)),
                evaluated=evaluated)


_TOKENIZER = {}


def teacher_prompt_tokens(model_path, calls):
    """Prompt tokens per request (vocabulary only, no weights computed)."""
    from stillroom.core.backends.llamacpp_load import open_gguf
    if model_path not in _TOKENIZER:
        _TOKENIZER[model_path] = open_gguf(model_path, vocab_only=True, verbose=False)
    llm = _TOKENIZER[model_path]
    return [len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)) for prompt, _ in calls]


def settings_params(n):
    from stillroom.core.backends.base import SamplingParams
    return SamplingParams(max_tokens=n)


def run_plain(model_path, calls):
    """The plain loop: llama-cpp-python's Llama over the same prompts and settings, nothing else
    (loaded through Stillroom's one GGUF loader, with the same load settings as the pipeline)."""
    from stillroom.core.backends.llamacpp_load import open_gguf
    llm = open_gguf(model_path, cpu_repack=CPU_REPACK, n_ctx=2048, n_threads=THREADS or os.cpu_count(),
                    seed=0, verbose=False)
    llm.create_completion("warm up", max_tokens=1)
    tokens = 0
    with Timer() as t:
        for prompt, p in calls:
            out = llm.create_completion(prompt, max_tokens=p.max_tokens, temperature=p.temperature,
                                        top_p=p.top_p, stop=list(p.stop) or None, seed=p.seed,
                                        **({"top_k": 1} if p.temperature <= 0 else {}))
            tokens += out["usage"]["completion_tokens"]
    llm.close()
    return dict(seconds=t.seconds, tokens=tokens, tps=tokens / t.seconds)


def answer_requests(folder, rows):
    """The chat requests with which generation asks the SmolLM2 teacher to answer the demo's held-out
    inputs (the answer prompt of a shot group), and the settings it asks with."""
    from stillroom.core import records
    from stillroom.core.backends.base import SamplingParams
    from stillroom.core.project import Project
    from stillroom.core.prompts import Prompter
    project = Project.create(folder, demo=True)
    prompter = Prompter(project.config.task, "chat")
    shots = project.seeds()[:6]
    inputs = [records.user_text(r) for r in project.tests() + project.seeds()[6:]][:rows]
    params = SamplingParams(temperature=0.0, max_tokens=SETTINGS["max_output_tokens"])
    return [(list(prompter.answer(shots, text, project.config.task.system_prompt).messages), params)
            for text in inputs]


def run_topk_answers(folder, rows, topk):
    """The SmolLM2 teacher answers the requests; with `topk`, each answer then gets its teacher-forced
    top-k (LlamaCppModel.answer_top_logprobs, what generation.teacher_logprobs runs per kept answer)."""
    from stillroom.core.backends.llamacpp import LlamaCppModel
    from stillroom.core.models import bundled_path
    calls = answer_requests(folder, rows)
    teacher = LlamaCppModel(bundled_path("smollm2-135m-instruct"), name="smollm2", parallel=1,
                            n_threads=THREADS, cpu_repack=CPU_REPACK)
    teacher.chat([{"role": "user", "content": "warm up"}], calls[0][1])
    if topk:   # open the logits_all context before the clock, as the model itself is loaded
        teacher.answer_top_logprobs([{"role": "user", "content": "warm up"}], "ok", topk)
    tokens = 0
    with Timer() as t:
        for messages, params in calls:
            answer = teacher.chat(messages, params)
            tokens += answer.completion_tokens
            if topk and answer.text:
                teacher.answer_top_logprobs(messages, answer.text, topk)
    teacher.close()
    return dict(seconds=t.seconds, tokens=tokens, tps=tokens / t.seconds, rows=len(calls),
                rows_per_s=len(calls) / t.seconds, calls=calls)


def run_plain_chat(calls, logprobs: int):
    """llama-cpp-python alone over the pipeline's chat requests; with `logprobs`, loaded with logits_all
    and asked for the top-`logprobs` of every generated token."""
    from stillroom.core.backends.llamacpp_load import open_gguf
    from stillroom.core.models import bundled_path
    llm = open_gguf(bundled_path("smollm2-135m-instruct"), cpu_repack=CPU_REPACK, n_ctx=2048,
                    n_threads=THREADS or os.cpu_count(), seed=0, verbose=False, logits_all=bool(logprobs))
    llm.create_chat_completion(messages=[{"role": "user", "content": "warm up"}], max_tokens=1)
    extra = {"logprobs": True, "top_logprobs": logprobs} if logprobs else {}
    tokens = 0
    with Timer() as t:
        for messages, p in calls:
            out = llm.create_chat_completion(messages=messages, max_tokens=p.max_tokens,
                                             temperature=p.temperature, top_p=p.top_p,
                                             stop=list(p.stop) or None, seed=p.seed,
                                             **({"top_k": 1} if p.temperature <= 0 else {}), **extra)
            tokens += out["usage"]["completion_tokens"]
    llm.close()
    return dict(seconds=t.seconds, tokens=tokens, tps=tokens / t.seconds)


def compare_logprobs(tmp: Path, rows: int, topk: int) -> None:
    calls = str(tmp / "chat-calls.json")

    def answers(name, k, *extra):
        return run_side(tmp, name, "topk", "--topk", str(k), "--rows", str(rows), "--folder", str(tmp / name),
                        *extra)

    def plain(name, k):
        return run_side(tmp, name, "plain-chat", "--topk", str(k), "--calls", calls)

    runs = {"off": [], "on": [], "plain_off": [], "plain_on": []}
    for round_ in range(2):
        for name in (("off", "on") if round_ == 0 else ("on", "off")):
            k = topk if name == "on" else 0
            record = ["--calls", calls] if (round_, name) == (0, "off") else []
            result = answers(f"answers-{name}-{round_}", k, *record)
            runs[name].append(result)
            print(f"answers, teacher_logprobs={k}: {result['rows']} answers, {result['tokens']} tok in "
                  f"{result['seconds']:.1f} s = {result['tps']:.1f} tok/s, {result['rows_per_s']:.3f} answers/s",
                  flush=True)
        for name in (("plain_off", "plain_on") if round_ == 0 else ("plain_on", "plain_off")):
            k = topk if name == "plain_on" else 0
            result = plain(f"{name}-{round_}", k)
            runs[name].append(result)
            print(f"plain llama-cpp chat, {'logits_all + top-' + str(k) if k else 'no logprobs'}: "
                  f"{result['tokens']} tok in {result['seconds']:.1f} s = {result['tps']:.1f} tok/s", flush=True)

    def mean(name, key):
        return sum(r[key] for r in runs[name]) / len(runs[name])
    ratios("logprobs", answers=mean("on", "rows_per_s") / mean("off", "rows_per_s"),
           logits_all=mean("plain_on", "tps") / mean("plain_off", "tps"),
           off_answers_per_s=mean("off", "rows_per_s"), on_answers_per_s=mean("on", "rows_per_s"))


def side(args) -> None:
    """One measured side, in this (fresh) process; its figures go to --out as JSON."""
    from stillroom.core.backends.base import SamplingParams
    from stillroom.core.backends.llamacpp import _silence_llama_log
    from stillroom.core.models import bundled_path
    model_path = bundled_path("gemma-3-270m")
    _silence_llama_log()     # llama.cpp's own notices (the SWA cache) would interleave with the figures
    if args.side == "topk":
        result = run_topk_answers(Path(args.folder), args.rows, args.topk)
        calls = result.pop("calls")
        if args.calls:
            Path(args.calls).write_text(json.dumps([(m, dataclasses.asdict(p)) for m, p in calls]))
        Path(args.out).write_text(json.dumps(result))
        return
    if args.side == "plain-chat":
        calls = [(messages, SamplingParams(**{**p, "stop": tuple(p["stop"])}))
                 for messages, p in json.loads(Path(args.calls).read_text())]
        Path(args.out).write_text(json.dumps(run_plain_chat(calls, args.topk)))
        return
    if args.side == "plain":
        calls = [(prompt, SamplingParams(**{**p, "stop": tuple(p["stop"])}))
                 for prompt, p in json.loads(Path(args.calls).read_text())]
        result = run_plain(model_path, calls)
    else:
        result = run_pipeline(Path(args.folder), args.k, args.rows, SETTINGS, model_path,
                              prefix_cache=not args.no_prefix_reuse)
        if args.calls:
            Path(args.calls).write_text(json.dumps([(prompt, dataclasses.asdict(p))
                                                    for prompt, p in result["calls"]]))
        del result["calls"]
    Path(args.out).write_text(json.dumps(result))


def run_side(tmp: Path, name: str, *extra, cpu_repack: str | None = None) -> dict:
    out = tmp / f"{name}.json"
    cmd = [sys.executable, __file__, "--side", *extra, "--out", str(out), "--threads", str(THREADS),
           "--cpu-repack", cpu_repack or CPU_REPACK]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32, help="kept rows per pipeline run")
    parser.add_argument("--k", type=int, default=8, help="candidates in flight for the batched run")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = all cores)")
    parser.add_argument("--cpu-repack", choices=["auto", "on", "off"], default="auto",
                        help="llama.cpp weight repacking for every side (teacher.cpu_repack)")
    parser.add_argument("--repack-compare", action="store_true",
                        help="only compare the plain loop with weight repacking on and off")
    parser.add_argument("--logprobs-compare", type=int, metavar="K", default=0,
                        help="only measure generation.teacher_logprobs = K against 0 (SmolLM2 teacher)")
    parser.add_argument("--side", choices=["pipeline", "plain", "topk", "plain-chat"], help=argparse.SUPPRESS)
    parser.add_argument("--topk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--calls", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--no-prefix-reuse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global THREADS, CPU_REPACK
    THREADS, CPU_REPACK = args.threads, args.cpu_repack
    if args.side:
        side(args)
        return
    if args.logprobs_compare:
        print(f"machine: {machine()}; model: SmolLM2-135M-Instruct Q4_1; rows: {args.rows}; "
              f"threads: {THREADS or os.cpu_count()}; top-{args.logprobs_compare}", flush=True)
        compare_logprobs(Path(tempfile.mkdtemp(prefix="stillroom-bench-")), args.rows, args.logprobs_compare)
        return
    from stillroom.core.backends.llamacpp_load import repack_enabled
    from stillroom.core.models import bundled_path
    model_path = bundled_path("gemma-3-270m")
    print(f"machine: {machine()}; model: {model_path.name}; rows: {args.rows}; "
          f"threads: {THREADS or os.cpu_count()}; cpu_repack: {CPU_REPACK} "
          f"({'on' if repack_enabled(CPU_REPACK) else 'off'})", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="stillroom-bench-"))
    calls = str(tmp / "calls.json")

    def pipeline(name, k, *extra):
        return run_side(tmp, name, "pipeline", "--k", str(k), "--rows", str(args.rows),
                        "--folder", str(tmp / name), *extra)

    if args.repack_compare:
        compare_repack(tmp, pipeline, calls)
        return
    single = pipeline("single", 1, "--calls", calls)
    n_calls = len(json.loads(Path(calls).read_text()))
    print(f"stillroom K=1        : {single['tokens']} tok in {single['seconds']:.1f} s = {single['tps']:.1f} tok/s, "
          f"{single['rows_per_s']:.3f} rows/s ({single['candidates']} candidates, {n_calls} calls)",
          flush=True)
    plain1 = run_side(tmp, "plain1", "plain", "--calls", calls)
    print(f"plain llama-cpp loop : {plain1['tokens']} tok in {plain1['seconds']:.1f} s = {plain1['tps']:.1f} tok/s",
          flush=True)
    batched = pipeline("batched", args.k)
    print(f"stillroom K={args.k}        : {batched['tokens']} tok in {batched['seconds']:.1f} s = "
          f"{batched['tps']:.1f} tok/s, {batched['rows_per_s']:.3f} rows/s ({batched['candidates']} candidates); "
          f"prompt tokens evaluated {batched['evaluated']} of {batched['prompt_tokens']} sent", flush=True)
    nocache = pipeline("nocache", args.k, "--no-prefix-reuse")
    print(f"stillroom K={args.k}, no prefix reuse: {nocache['tokens']} tok in {nocache['seconds']:.1f} s = "
          f"{nocache['tps']:.1f} tok/s, {nocache['rows_per_s']:.3f} rows/s; prompt tokens evaluated "
          f"{nocache['evaluated']} of {nocache['prompt_tokens']}", flush=True)
    plain2 = run_side(tmp, "plain2", "plain", "--calls", calls)
    print(f"plain llama-cpp loop (again): {plain2['tps']:.1f} tok/s", flush=True)
    single2 = pipeline("single2", 1)
    print(f"stillroom K=1 (again): {single2['tps']:.1f} tok/s", flush=True)
    batched2 = pipeline("batched2", args.k)
    print(f"stillroom K={args.k} (again): {batched2['tps']:.1f} tok/s, {batched2['rows_per_s']:.3f} rows/s",
          flush=True)
    plain = (plain1["tps"] + plain2["tps"]) / 2
    # Same requests on both sides: the single-stream ratio is a ratio of times (the streamed text of
    # the pipeline leaves out the tokens of a matched stop string, which usage counts include).
    plain_s = (plain1["seconds"] + plain2["seconds"]) / 2
    mine_s = (single["seconds"] + single2["seconds"]) / 2
    mine = plain * plain_s / mine_s
    print(f"(plain, K=1 and K={args.k} each run twice, interleaved with the others, and averaged: the "
          f"machine is shared)")
    batched_tps = (batched["tps"] + batched2["tps"]) / 2
    batched_rows = (batched["rows_per_s"] + batched2["rows_per_s"]) / 2
    ratios("generate", single=plain_s / mine_s, batched=batched_tps / plain,
           batched_rows=batched_rows / ((single["rows_per_s"] + single2["rows_per_s"]) / 2),
           prefix_reuse=batched["tps"] / nocache["tps"], plain_tps=plain, single_tps=mine,
           batched_tps=batched_tps)


def compare_repack(tmp: Path, pipeline, calls: str) -> None:
    """The plain loop over the K=1 pipeline's requests, weight repacking on and off, alternating."""
    pipeline("record", 1, "--calls", calls)
    runs = {"on": [], "off": []}
    for round_ in range(2):
        for setting in ("on", "off") if round_ == 0 else ("off", "on"):
            result = run_side(tmp, f"plain-{setting}-{round_}", "plain", "--calls", calls, cpu_repack=setting)
            runs[setting].append(result["tps"])
            print(f"plain loop, repack {setting:3}: {result['tokens']} tok in {result['seconds']:.1f} s = "
                  f"{result['tps']:.1f} tok/s", flush=True)
    on, off = (sum(runs[k]) / len(runs[k]) for k in ("on", "off"))
    ratios("repack", on_over_off=on / off, on_tps=on, off_tps=off)


if __name__ == "__main__":
    main()
