"""Generation through the `openai` backend against llama-cpp-python's own OpenAI-compatible server.

The script starts `python -m llama_cpp.server` with the bundled Gemma 3 270M teacher on 127.0.0.1,
runs Stillroom's generation pipeline (demo tickets as a `qa` task, base model in completion mode) with
K = 1, 2 and 4 requests in flight, then the same with two servers (one thread each) used round-robin.
The yardstick replays the K=1 run's requests with a plain `openai` client loop, streamed (as the
pipeline asks) and not streamed; the server is warmed up first and the K=1 pipeline runs twice, before
and after the replays, keeping its faster run, so neither side pays for a cold server. k1_vs_plain is
a ratio of times for the same requests (the pipeline's streamed count leaves out stop-string tokens).

    python bench/generate_server.py [--rows 12] [--threads N]

Ends with: RATIOS generate_server: k1=<rows/s> k2=... k4=... plain_vs_k1=<tok/s ratio> ...
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _common  # noqa: F401
from _common import Timer, machine, ratios
from _server import LlamaServer
from generate import Recording


def make_project(folder: Path, url: str, servers: list, k: int):
    from stillroom.core.project import Project
    project = Project.create(folder, demo=True)
    cfg = project.config
    cfg.task.type = "qa"
    cfg.teacher.model, cfg.teacher.model_name, cfg.teacher.mode = f"openai:{url}", "teacher", "completion"
    cfg.teacher.servers, cfg.teacher.max_in_flight = servers, k
    cfg.generation.max_input_tokens, cfg.generation.max_output_tokens = 48, 32
    cfg.generation.max_attempts_factor = 50
    project.save_config()
    return Project.open(project.root)


def run(folder, urls, k, rows):
    from stillroom.core.backends import load_teacher
    from stillroom.core.generate import generate
    project = make_project(folder, urls[0], urls[1:], k)
    teacher = Recording(load_teacher(project))
    with Timer() as t:
        result = generate(project, rows, teacher=teacher)
    teacher.close()
    return dict(rows_per_s=result.kept / t.seconds, tps=result.teacher_tokens / t.seconds,
                seconds=t.seconds, calls=teacher.calls, candidates=result.kept + result.rejected)


def plain(url, calls, stream: bool):
    import openai
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    with Timer() as t:
        for prompt, p in calls:
            out = client.completions.create(model="teacher", prompt=prompt, max_tokens=p.max_tokens,
                                            temperature=p.temperature, top_p=p.top_p,
                                            stop=list(p.stop) or None, seed=p.seed, stream=stream)
            if stream:
                for _ in out:
                    pass
    return t.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="threads of the single server (0 = all "
                        "cores); each of the two servers gets half")
    args = parser.parse_args()
    from stillroom.core.models import bundled_path
    model = bundled_path("gemma-3-270m")
    cores = args.threads or len(os.sched_getaffinity(0))
    print(f"machine: {machine()}; model: {model.name}; rows per run: {args.rows}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="stillroom-bench-"))
    out = {}
    with LlamaServer(model, alias="teacher", n_ctx=2048, threads=cores, log=tmp / "server.log") as server:
        import openai
        openai.OpenAI(base_url=server.url, api_key="none").completions.create(
            model="teacher", prompt="Warm-up:", max_tokens=8)
        first = run(tmp / "k1", [server.url], 1, args.rows)
        stream_s = plain(server.url, first["calls"], stream=True)
        whole_s = plain(server.url, first["calls"], stream=False)
        again = run(tmp / "k1-again", [server.url], 1, args.rows)
        print(f"K=1 pipeline: {first['seconds']:.1f} s, then {again['seconds']:.1f} s; plain client over the same "
              f"{len(first['calls'])} requests: streamed {stream_s:.1f} s, not streamed {whole_s:.1f} s (second pipeline "
              f"run made the same requests: {again['calls'] == first['calls']})", flush=True)
        out[1] = min(first, again, key=lambda r: r["seconds"])
        for k in (2, 4):
            out[k] = run(tmp / f"k{k}", [server.url], k, args.rows)
        for k in (1, 2, 4):
            print(f"one server, K={k}: {out[k]['rows_per_s']:.3f} rows/s, {out[k]['tps']:.1f} tok/s "
                  f"({out[k]['candidates']} candidates in {out[k]['seconds']:.1f} s)", flush=True)
    two = {}
    servers = [LlamaServer(model, alias="teacher", n_ctx=2048, threads=max(1, cores // 2),
                           log=tmp / f"server{i}.log") for i in range(2)]
    try:
        for s in servers:
            s.start()
        for k in (2, 4):
            two[k] = run(tmp / f"two-k{k}", [s.url for s in servers], k, args.rows)
            print(f"two servers ({max(1, cores // 2)} thread each), K={k}: {two[k]['rows_per_s']:.3f} rows/s, "
                  f"{two[k]['tps']:.1f} tok/s", flush=True)
    finally:
        for s in servers:
            s.stop()
    ratios("generate_server", k1=out[1]["rows_per_s"], k2=out[2]["rows_per_s"], k4=out[4]["rows_per_s"],
           k4_vs_k1=out[4]["rows_per_s"] / out[1]["rows_per_s"], k1_vs_plain=stream_s / out[1]["seconds"],
           k1_vs_plain_unstreamed=whole_s / out[1]["seconds"],
           two_servers_k4=two[4]["rows_per_s"])


if __name__ == "__main__":
    main()
