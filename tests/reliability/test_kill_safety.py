"""SIGKILL at random moments, repeated: nothing written is ever lost, torn or duplicated."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clitools import REPO, run_cli
from stillroom.core import records
from stillroom.core.config import load_config
from stillroom.core.project import Project
from stillroom.core.runs import list_runs, read_metrics
from stillroom.core.train import train
from killing import KILL_SCRIPT, kill_mid_run
from projects import make_project
from projects import tiny_project
from tiny import build_tiny_llama

TESTS = str(Path(__file__).resolve().parents[1])
# Kills per case: 20 by default; STILLROOM_KILLS lowers it for a quicker pass.
KILLS = int(os.environ.get("STILLROOM_KILLS", "20"))


def test_generation_killed_repeatedly_ends_with_exactly_n(tmp_path):
    project = make_project(tmp_path)
    target = 3 * KILLS + 20
    script = KILL_SCRIPT.format(tests=TESTS, root=str(project.root), target=target)
    landed = kill_mid_run(script, project.synthetic_path, random.Random(11), rounds=KILLS, grow=2)
    assert landed >= KILLS * 3 // 4
    subprocess.run([sys.executable, "-c", script], timeout=600, check=True)
    rows = [json.loads(line) for line in project.synthetic_path.read_text().splitlines()]
    kept = [r for r in rows if r["status"] == "kept"]
    assert len(kept) == target
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({records.user_text(r) for r in kept}) == len(kept)


SAVE_LOOP = """
import sys
sys.path.insert(0, {tests!r})
from stillroom.core.project import Project
project = Project.open({root!r})
rows = project.synthetic()
i = 0
print("ready", flush=True)
while True:
    i += 1
    status = "pruned" if i % 2 else "kept"
    for row in rows:
        row["status"] = status
    project.save_synthetic(rows)
"""


def _kill_while_looping(script, rng, kills, check):
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check()


def test_review_save_killed_is_old_or_new_never_a_mix(tmp_path):
    project = make_project(tmp_path)
    rows = [{"id": f"syn-{i:06d}", "status": "kept", "reason": "", "scores": {}, "meta": {"pad": "x" * 300},
             "messages": records.make_row(f"row {i} " * 20, "billing")["messages"]} for i in range(2000)]
    project.save_synthetic(rows)

    def check():
        loaded = project.synthetic()          # parses: no torn line anywhere
        assert len(loaded) == len(rows)
        assert len({r["status"] for r in loaded}) == 1, "a mix of two versions"
        leftovers = [p.name for p in project.synthetic_path.parent.iterdir() if p.name != "synthetic.jsonl"]
        assert all(name.startswith(".synthetic.jsonl.") for name in leftovers)

    script = SAVE_LOOP.format(tests=TESTS, root=str(project.root))
    _kill_while_looping(script, random.Random(5), KILLS, check)


CONFIG_LOOP = """
from stillroom.core.project import Project
project = Project.open({root!r})
i = 0
print("ready", flush=True)
while True:
    i += 1
    project.config.task.description = ("A" if i % 2 else "B") * 5000
    project.config.training.epochs = 1.0 if i % 2 else 2.0
    project.save_config()
"""


def test_config_save_killed_is_old_or_new_never_a_mix(tmp_path):
    project = make_project(tmp_path)

    def check():
        config = load_config(project.config_path)    # always a whole, valid file
        description = config.task.description
        assert description in ("A" * 5000, "B" * 5000) or description == project.config.task.description
        if description == "A" * 5000:
            assert config.training.epochs == 1.0
        if description == "B" * 5000:
            assert config.training.epochs == 2.0

    script = CONFIG_LOOP.format(root=str(project.root))
    _kill_while_looping(script, random.Random(6), KILLS, check)


# ---------------------------------------------------------------- training

TRAIN_STEPS = 16


def _start_cli(log, *args):
    """The real CLI in its own process group (so a kill takes any child with it)."""
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "stillroom.tui", *map(str, args)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _kill_group(proc) -> bool:
    """SIGKILL the process group; True when the process was still running (the kill landed)."""
    landed = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return landed


def _training_at(project, pid: int) -> int:
    """The step `pid` has logged in the newest run, or -1 before it has started training."""
    runs = project.run_dirs()
    if not runs:
        return -1
    state = json.loads((runs[-1] / "state.json").read_text()) if (runs[-1] / "state.json").exists() else {}
    if state.get("pid") != pid and _parent(state.get("pid")) != pid:    # the CLI trains in a child job
        return -1
    return max((m["step"] for m in read_metrics(runs[-1])), default=0)


def _parent(pid) -> int:
    try:
        return int(Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, TypeError, IndexError):
        return -1


def _saving(project) -> bool:
    """A checkpoint folder without its trainer_state.json: being written (or being deleted)."""
    return any(not (p / "trainer_state.json").exists()
               for run in project.run_dirs() for p in (run / "checkpoints").glob("checkpoint-*"))


@pytest.mark.slow
def test_training_killed_repeatedly_resumes_to_the_same_end(tmp_path):
    tiny = build_tiny_llama(tmp_path / "tiny")
    project = tiny_project(tmp_path, tiny, save_steps=2, eval_steps=2, max_steps=TRAIN_STEPS)
    rng = random.Random(17)
    log = tmp_path / "train.log"
    landed, moments = 0, []
    for i in range(KILLS):
        resume = ["--resume"] if any(r.resumable for r in list_runs(project)) else []
        proc = _start_cli(log, "train", project.root, *resume)
        try:
            target = 1 + i * (TRAIN_STEPS - 5) // KILLS      # spread over the run, step 1 included
            if i % 4 == 0:       # anywhere: importing, loading, writing the run folder, training
                time.sleep(rng.uniform(0.1, 3.0))
            elif i % 4 == 2:     # while a checkpoint is written
                while proc.poll() is None and not (_training_at(project, proc.pid) >= target and _saving(project)) \
                        and _training_at(project, proc.pid) < target + 3:
                    time.sleep(0.005)
            else:                # just after a step
                while proc.poll() is None and _training_at(project, proc.pid) < target:
                    time.sleep(0.01)
                time.sleep(rng.choice([0, rng.uniform(0, 0.15)]))
            assert proc.poll() is None, f"training ended before the kill:\n{log.read_text()}"
        finally:
            moments.append(f"{_training_at(project, proc.pid)}{'s' if _saving(project) else ''}")
            landed += _kill_group(proc)
        deadline = time.monotonic() + 30     # the training child, killed with its group, is reaped by init
        while any(r.status == "running" for r in list_runs(project)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for run in list_runs(project):
            assert run.status == "interrupted"
            steps = [m["step"] for m in read_metrics(run.path)]
            assert steps == list(range(1, len(steps) + 1)), steps      # no gap, no repeat
    print(f"{landed} kills landed at steps {' '.join(moments)} (-1: before training, s: mid-save)")
    assert landed == KILLS

    result = run_cli("train", project.root, "--resume", timeout=600)
    assert result.returncode == 0, result.stderr
    [summary] = list_runs(project)
    assert summary.status == "finished" and summary.step == summary.max_steps == TRAIN_STEPS
    assert [m["step"] for m in read_metrics(summary.path)] == list(range(1, TRAIN_STEPS + 1))
    assert (summary.path / "adapter" / "adapter_model.safetensors").exists()
    assert not list(summary.path.glob(".adapter*"))
    # Resumes restore the data order, RNG and optimizer: the same end as a run never killed.
    straight = train(project)
    assert straight.final_loss == pytest.approx(summary.final_loss, rel=1e-4)


@pytest.mark.slow
def test_training_killed_after_its_last_checkpoint_publishes_without_training_further(tmp_path):
    from safetensors.torch import load_file
    tiny = build_tiny_llama(tmp_path / "tiny")
    project = tiny_project(tmp_path, tiny, save_steps=2, eval_steps=2, max_steps=4)
    done = train(project)
    # As a kill between the last checkpoint and the final folder leaves it: running, no adapter yet.
    run = done.run_dir
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "status": "running", "pid": 2 ** 22 + 1}))
    os.replace(run / "adapter", run / ".adapter.partial")
    resumed = train(project, resume=True)
    assert resumed.step == 4 and [m["step"] for m in read_metrics(run)] == [1, 2, 3, 4]
    assert (resumed.final_loss, resumed.final_eval_loss) == (done.final_loss, done.final_eval_loss)
    [summary] = list_runs(project)
    assert summary.status == "finished" and summary.final_loss == done.final_loss
    published = load_file(run / "adapter" / "adapter_model.safetensors")
    saved = load_file(run / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert published.keys() == saved.keys() and all(published[k].equal(saved[k]) for k in saved)
    assert not (run / ".adapter.partial").exists()


# ---------------------------------------------------------------- export

EXPORT_RUN = "20250101-000000"


def _export_project(tmp_path):
    from tiny import tiny_adapter_dir, tiny_llama_dir
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.model = str(tiny_llama_dir())
    project.save_config()
    run_dir = project.runs_dir / EXPORT_RUN
    tiny_adapter_dir(tiny_llama_dir(), run_dir / "adapter")
    (run_dir / "config.json").write_text(json.dumps({"student": {"model": project.config.student.model}}))
    return Project.open(project.root)


def _tensor_shapes(path, read=False) -> dict:
    """{name: shape} of a safetensors file; with `read`, every tensor is read in full (a torn file fails)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as handle:
        if read:
            return {key: tuple(handle.get_tensor(key).shape) for key in handle.keys()}
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


def _assert_whole_safetensors(path, expected: dict):
    """The file holds exactly the expected tensors, with their shapes, each readable in full."""
    assert expected, "the reference has no tensors to compare with"
    assert _tensor_shapes(path, read=True) == expected


def _expected_tensors(project) -> dict:
    """What a whole export holds: the adapter's tensors as trained, the merged model's as the base's."""
    return {"adapter": _tensor_shapes(project.runs_dir / EXPORT_RUN / "adapter" / "adapter_model.safetensors"),
            "merged": _tensor_shapes(Path(project.config.student.model) / "model.safetensors")}


def _assert_exports_whole(folder, expected: dict):
    """Every path with its final name is a finished export; anything else has a hidden name."""
    import gguf
    from stillroom.core.export import STAMP, parse_modelfile
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        if path.name == "adapter":
            json.loads((path / STAMP).read_text())
            json.loads((path / "adapter_config.json").read_text())
            _assert_whole_safetensors(path / "adapter_model.safetensors", expected["adapter"])
        elif path.name == "merged":
            json.loads((path / STAMP).read_text())
            json.loads((path / "config.json").read_text())
            json.loads((path / "tokenizer_config.json").read_text())
            _assert_whole_safetensors(path / "model.safetensors", expected["merged"])
        elif path.suffix == ".gguf":
            reader = gguf.GGUFReader(path)           # raises on a torn file
            assert reader.tensors
            end = max(t.data_offset + t.n_bytes for t in reader.tensors)
            assert end <= path.stat().st_size
        elif path.name == "Modelfile":
            text = path.read_text()
            assert text.endswith("PARAMETER temperature 0\n")
            assert (folder / parse_modelfile(text)["from"]).exists()
        else:
            pytest.fail(f"unexpected {path.name} in {folder}")


@pytest.mark.slow
def test_export_killed_repeatedly_never_shows_a_partial_file(tmp_path):
    project = _export_project(tmp_path)
    expected = _expected_tensors(project)
    out = project.exports_dir / EXPORT_RUN
    rng = random.Random(23)
    log = tmp_path / "export.log"
    formats = ["merged", "gguf", "ollama", "gguf", "adapter"]
    landed, attempts, seen = 0, 0, set()
    while landed < KILLS and attempts < 3 * KILLS:
        fmt = formats[attempts % len(formats)]
        attempts += 1
        proc = _start_cli(log, "export", project.root, "--format", fmt, "--quant", "f16,q4_k_m", "--no-check")
        try:
            if rng.random() < 0.5:       # anywhere
                time.sleep(rng.uniform(0.1, 2.0 if fmt == "adapter" else 8.0))
            else:                        # once something is being written, soon or a while later
                while proc.poll() is None and not (out.is_dir() and any(
                        p.name.startswith(".") for p in out.iterdir())):
                    time.sleep(0.005)
                time.sleep(rng.choice([0, rng.uniform(0, 2.0)]))
        finally:
            if out.is_dir():
                seen |= {p.name.split(".partial")[0].split(".log")[0] for p in out.iterdir()
                         if p.name.startswith(".")}
            landed += _kill_group(proc)
        assert proc.returncode in (0, -signal.SIGKILL), log.read_text()
        if out.is_dir():
            _assert_exports_whole(out, expected)
    print(f"{landed} kills landed in {attempts} exports; partial names seen: {sorted(seen)}")
    assert landed >= KILLS

    for fmt in ("adapter", "merged", "ollama"):
        done = run_cli("export", project.root, "--format", fmt, "--quant", "f16,q4_k_m", "--no-check")
        assert done.returncode == 0, done.stderr
    _assert_exports_whole(out, expected)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["adapter", "merged", f"{EXPORT_RUN}-f16.gguf", f"{EXPORT_RUN}-q4_k_m.gguf", "Modelfile"])  # nothing partial
    from transformers import AutoModelForCausalLM
    assert AutoModelForCausalLM.from_pretrained(out / "merged").num_parameters() > 0
