"""Fine-tuning on a tiny randomly initialised Llama: masks, packing, run files, events, cancel, resume."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from clitools import REPO, run_cli
from stillroom.core import events, records
from stillroom.core.errors import ConfigError, DataError, StillroomError
from stillroom.core.project import Project
from stillroom.core.packing import IGNORE_INDEX, packing_isolates_rows
from stillroom.core.runs import last_checkpoint, list_runs, read_metrics
from stillroom.core.sft_data import Collator, render_row, render_rows, selected_logits_loss, split_rows
from stillroom.core.train import train
from projects import tiny_project


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from stillroom.core.student import load_tokenizer
    return load_tokenizer(tiny, for_training=True)


def labelled_text(tokenizer, rendered) -> str:
    return tokenizer.decode([t for t, l in zip(rendered.input_ids, rendered.labels) if l != IGNORE_INDEX])


# ---------------------------------------------------------------- data

def test_loss_only_on_assistant_tokens(tokenizer):
    row = records.make_row("My card was charged twice.", "billing", system="Route the ticket.")
    rendered = render_row(tokenizer, row["messages"], 256)
    assert len(rendered.input_ids) == len(rendered.labels)
    assert labelled_text(tokenizer, rendered) == "billing<|im_end|>"
    # Every labelled token is the token itself; the system and user turns carry no loss.
    prompt = tokenizer.apply_chat_template(row["messages"][:2], tokenize=False, add_generation_prompt=True)
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert all(l == IGNORE_INDEX for l in rendered.labels[:prompt_len])
    assert all(l == t for t, l in zip(rendered.input_ids[prompt_len:], rendered.labels[prompt_len:])
               if l != IGNORE_INDEX)
    assert not rendered.truncated


def test_masks_cover_every_assistant_turn(tokenizer):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where is my parcel?"},
                {"role": "assistant", "content": "shipping"},
                {"role": "user", "content": "The app crashes."},
                {"role": "assistant", "content": "technical"}]
    rendered = render_row(tokenizer, messages, 256)
    assert labelled_text(tokenizer, rendered) == "shipping<|im_end|>technical<|im_end|>"
    text = tokenizer.decode(rendered.input_ids)
    assert "Where is my parcel?" in text and "The app crashes." in text


def test_template_that_rewrites_earlier_turns_trains_the_last_answer(tokenizer):
    """Some templates (reasoning models) render earlier assistant turns differently from the last one."""
    import copy
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] == 'assistant' and not loop.last %}(earlier){% else %}{{ m['content'] }}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    messages = [{"role": "user", "content": "Where is my parcel?"}, {"role": "assistant", "content": "shipping"},
                {"role": "user", "content": "The app crashes."}, {"role": "assistant", "content": "technical"}]
    rendered = render_row(tok, messages, 256)
    assert labelled_text(tok, rendered) == "technical<|im_end|>"


def test_truncation_is_counted_and_answerless_rows_dropped(tokenizer):
    long_user = "Where is my parcel? " * 40
    short = records.make_row("Where is my parcel?", "shipping")
    long = records.make_row(long_user, "shipping")
    data = render_rows(tokenizer, [short, long], [], 40)
    assert data.truncated == 0 and data.dropped == 1 and len(data.train) == 1
    # Cut inside the answer: kept (some answer tokens remain), counted as truncated.
    answer = records.make_row("Hi", "billing shipping technical account " * 10)
    data = render_rows(tokenizer, [answer], [], 30)
    assert data.truncated == 1 and len(data.train) == 1 and len(data.train[0]["input_ids"]) == 30


def test_validation_split_is_seeded_and_disjoint():
    rows = [records.make_row(f"question {i}", "billing") for i in range(40)]
    train_a, val_a = split_rows(rows, 0.1, seed=3)
    train_b, val_b = split_rows(rows, 0.1, seed=3)
    assert val_a == val_b and len(val_a) == 4 and len(train_a) == 36
    assert not {json.dumps(r) for r in val_a} & {json.dumps(r) for r in train_a}
    assert split_rows(rows, 0.1, seed=4)[1] != val_a
    assert split_rows(rows[:1], 0.5, seed=0) == (rows[:1], [])


def test_packing_keeps_rows_apart(tiny, tokenizer):
    """A packed batch gives each row exactly the logits it gets alone: no attention across rows."""
    import torch
    from stillroom.core.student import load_student
    model, _ = load_student(str(tiny))
    rows = [records.make_row("Where is my parcel?", "shipping"),
            records.make_row("I forgot my password, help me log in please.", "account", system="Route it.")]
    data = render_rows(tokenizer, rows, [], 128)
    packed = Collator(tokenizer.pad_token_id, "pack")(data.train)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in data.train))
    assert "attention_mask" not in packed
    padded = Collator(tokenizer.pad_token_id, "pad")(data.train)
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                              use_cache=False).logits[0]
        offset = 0
        for row in data.train:
            alone = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            n = len(row["input_ids"])
            assert torch.allclose(packed_logits[offset:offset + n], alone, atol=1e-4)
            offset += n
        packed_loss = model(**packed, use_cache=False).loss
        padded_loss = model(**padded, use_cache=False).loss
    assert torch.allclose(packed_loss, padded_loss, atol=1e-4)
    assert packing_isolates_rows(model, data.train)


@pytest.mark.parametrize("mode", ["pack", "pad"])
def test_loss_on_selected_logits_equals_the_full_loss(tiny, tokenizer, mode):
    import torch
    from stillroom.core.student import load_student
    model, _ = load_student(str(tiny))
    rows = [records.make_row("Where is my parcel?", "shipping"),
            records.make_row("I forgot my password, help me log in please.", "account technical", system="Hi")]
    data = render_rows(tokenizer, rows, [], 128)
    full = Collator(tokenizer.pad_token_id, mode)(data.train)
    selected = Collator(tokenizer.pad_token_id, mode, select_logits=True)(data.train)
    labels = selected.pop("labels")
    assert len(selected["logits_to_keep"]) < full["input_ids"].shape[1] // 3
    with torch.no_grad():
        expected = model(**full, use_cache=False).loss
        outputs = model(**selected, use_cache=False)
    assert torch.allclose(selected_logits_loss(outputs, labels), expected, atol=1e-5)
    n = int((labels != IGNORE_INDEX).sum())
    assert torch.allclose(selected_logits_loss(outputs, labels, torch.tensor(2 * n)), expected / 2, atol=1e-5)


# ---------------------------------------------------------------- runs

@pytest.mark.slow
def test_run_writes_files_events_and_adapter(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny)
    seen = []
    result = train(project, on_event=seen.append, overrides={"max_steps": 8})
    assert not result.cancelled and result.step == result.max_steps == 8
    run = result.run_dir
    assert run.parent == project.runs_dir and result.output_dir == run / "adapter"

    config = json.loads((run / "config.json").read_text())
    assert config["run_id"] == result.run_id and config["method"] == "lora" and config["max_steps"] == 8
    assert config["config"]["training"]["max_steps"] == 8 and config["overrides"] == {"max_steps": 8}
    assert config["config"]["student"]["model"] == str(tiny)
    assert len(config["data"]["hash"]) == 64
    assert config["data"]["train_rows"] == result.train_rows and result.validation_rows >= 1
    assert config["device"] == "cpu" and config["precision"] == "fp32"

    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == list(range(1, 9))
    for line in metrics:
        assert {"step", "epoch", "loss", "eval_loss", "learning_rate", "tokens_per_second", "elapsed",
                "peak_memory_mb"} <= set(line)
        assert line["loss"] > 0 and line["tokens_per_second"] > 0 and line["peak_memory_mb"] > 0
    assert [m["step"] for m in metrics if m["eval_loss"] is not None] == [4, 8]
    assert [m["elapsed"] for m in metrics] == sorted(m["elapsed"] for m in metrics)
    assert result.final_loss == metrics[-1]["loss"] and result.final_eval_loss == metrics[-1]["eval_loss"]

    adapter = sorted(p.name for p in (run / "adapter").iterdir())
    assert "adapter_model.safetensors" in adapter and "adapter_config.json" in adapter
    assert "tokenizer_config.json" in adapter
    assert not [n for n in adapter if n.endswith((".bin", ".pt", ".pth"))]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-4", "checkpoint-8"]

    kinds = [type(e).__name__ for e in seen if not isinstance(e, events.Status)]
    assert kinds[0] == "TrainStarted" and kinds[-1] == "TrainFinished"
    steps = [e for e in seen if isinstance(e, events.TrainStep)]
    assert [e.step for e in steps] == list(range(1, 9))          # one event per step
    assert all(e.loss is not None and e.max_steps == 8 for e in steps)   # logging_steps = 1
    assert [e.step for e in seen if isinstance(e, events.EvalStep)] == [4, 8]
    assert [e.step for e in seen if isinstance(e, events.CheckpointSaved)] == [4, 8]

    [summary] = list_runs(project)
    assert (summary.run_id, summary.status, summary.step, summary.max_steps) == (result.run_id, "finished", 8, 8)
    assert summary.final_loss == result.final_loss and summary.output_dir == run / "adapter"

    # The adapter loads onto the base student and generates.
    from stillroom.core.student import load_student
    model, tok = load_student(str(tiny), adapter=run / "adapter")
    inputs = tok.apply_chat_template([{"role": "user", "content": "Where is my parcel?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]

    with pytest.raises(StillroomError, match="already finished"):
        train(project, resume=result.run_id)


@pytest.mark.slow
def test_full_finetune_and_length_grouping(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny, batching="group", validation_fraction=0.0, logging_steps=3)
    result = train(project, overrides={"max_steps": 4, "method": "full"})
    assert result.output_dir == result.run_dir / "model" and result.validation_rows == 0
    names = {p.name for p in result.output_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= names
    from stillroom.core.student import load_student
    model, tok = load_student(str(result.output_dir))
    assert tok.chat_template
    metrics = read_metrics(result.run_dir)
    assert [m["step"] for m in metrics] == [1, 3, 4]          # the first, every 3rd and the last step
    assert [m["eval_loss"] for m in metrics] == [None, None, None]


@pytest.mark.slow
def test_cancel_stops_with_a_checkpoint_then_resume_finishes(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny, save_steps=50)
    cancel = threading.Event()

    def on_event(event):
        if isinstance(event, events.TrainStep) and event.step == 3:
            cancel.set()
    stopped = train(project, on_event=on_event, cancel=cancel, overrides={"max_steps": 10})
    assert stopped.cancelled and stopped.step == 3 and stopped.output_dir is None
    assert last_checkpoint(stopped.run_dir).name == "checkpoint-3"
    assert not (stopped.run_dir / "adapter").exists()
    [summary] = list_runs(project)
    assert summary.status == "stopped" and summary.resumable and summary.step == 3

    with pytest.raises(ConfigError, match="resumed run keeps"):
        train(project, resume=True, overrides={"max_steps": 20})
    seen = []
    resumed = train(project, resume=True, on_event=seen.append)
    assert resumed.run_id == stopped.run_id and not resumed.cancelled
    assert resumed.step == resumed.max_steps == 10
    started = [e for e in seen if isinstance(e, events.TrainStarted)][0]
    assert started.step == 3
    assert [e.step for e in seen if isinstance(e, events.TrainStep)] == list(range(4, 11))
    assert [m["step"] for m in read_metrics(resumed.run_dir)] == list(range(1, 11))
    assert list_runs(project)[0].status == "finished"


@pytest.mark.slow
def test_cancel_before_start_leaves_a_resumable_run(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny)
    cancel = threading.Event()
    cancel.set()
    result = train(project, cancel=cancel, overrides={"max_steps": 4})
    assert result.cancelled and result.step == 0
    assert list_runs(project)[0].status == "stopped"
    assert train(project, resume=True).step == 4


@pytest.mark.slow
def test_run_killed_before_its_first_state_line_resumes(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny)
    cancel = threading.Event()
    cancel.set()
    train(project, cancel=cancel, overrides={"max_steps": 4})
    [run] = project.run_dirs()
    (run / "state.json").unlink()            # as a kill between config.json and state.json leaves it
    (run / "metrics.jsonl").unlink()
    [summary] = list_runs(project)
    assert summary.status == "interrupted" and summary.resumable
    assert train(project, resume=True).step == 4
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3, 4]


def test_no_rows_is_a_clear_error(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny, include_seeds=False)
    with pytest.raises(DataError, match="no training rows"):
        train(project)
    with pytest.raises(StillroomError, match="no stopped or interrupted run"):
        train(project, resume=True)
    with pytest.raises(ConfigError, match="unknown training setting"):
        train(project, overrides={"max_stepz": 3})
    with pytest.raises(ConfigError, match="method"):
        train(project, overrides={"method": "qlora"})


def test_a_student_that_cannot_load_leaves_no_run_folder(tmp_path, tiny):
    from stillroom.core.errors import ModelError
    project = tiny_project(tmp_path, tiny)
    project.config.student.model = str(tmp_path / "missing-model")
    project.save_config()
    with pytest.raises(ModelError, match="not found"):
        train(Project.open(project.root))
    assert project.run_dirs() == []


# ---------------------------------------------------------------- kill and resume (a real subprocess)

@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_final_step(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny, save_steps=2, eval_steps=2, max_steps=8)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "stillroom.tui", "train", str(project.root)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            runs = project.run_dirs()
            checkpoint = last_checkpoint(runs[0]) if runs else None
            if checkpoint is not None and int(checkpoint.name.split("-")[1]) >= 4:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint within the time limit")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    [summary] = list_runs(project)
    assert summary.status == "interrupted" and summary.resumable
    killed_at = summary.step
    assert 4 <= killed_at < 8

    result = run_cli("train", project.root, "--resume", timeout=300)
    assert result.returncode == 0, result.stderr
    [summary] = list_runs(project)
    assert summary.status == "finished" and summary.step == summary.max_steps == 8
    steps = [m["step"] for m in read_metrics(summary.path)]
    assert steps == list(range(1, 9))                       # no gap, no repeat
    assert (summary.path / "adapter" / "adapter_model.safetensors").exists()
    # The same run, uninterrupted, ends at the same loss (resume restores data order, RNG and optimizer).
    straight = train(project)
    assert straight.final_loss == pytest.approx(summary.final_loss, rel=1e-4)


def test_cli_lists_runs_and_reports_errors(tmp_path, tiny):
    project = tiny_project(tmp_path, tiny)
    result = run_cli("train", project.root, "--list")
    assert result.returncode == 0 and "no training runs" in result.stdout
    result = run_cli("train", project.root, "--resume")
    assert result.returncode == 2 and "no stopped or interrupted run" in result.stderr
    assert "Traceback" not in result.stderr
