"""Helpers for the model-screen tests: a demo project whose student is a tiny random Llama (built here, in
a second), a finished run with a LoRA adapter, loss history and an evaluation, and the fake teacher."""
import json
from pathlib import Path

from fakes import FakeTeacher
from stillroom.core import records
from stillroom.core.project import Project

RUN_ID = "20260101-120000-lora"
MARKUP = "Refund [bold red]now[/bold red] or see [link=https://example.com]x[/link]"


class StreamingTeacher(FakeTeacher):
    """The fake teacher, a little slower, so a test can see its words arrive one by one."""

    def __init__(self, labels, delay_per_token: float = 0.0):
        super().__init__(labels=labels)
        self.delay_per_token = delay_per_token

    def complete(self, prompt, params, on_token=None, cancel=None):
        import time
        if on_token is not None and self.delay_per_token:
            inner = on_token

            def on_token(text):  # noqa: F811 - slowed down on purpose
                time.sleep(self.delay_per_token)
                inner(text)
        return super().complete(prompt, params, on_token=on_token, cancel=cancel)


TEACHER = "modelscreens:teacher_factory"    # by name: jobs import it in their own process


def teacher_factory(project):
    return StreamingTeacher(project.config.task.labels, delay_per_token=0.1)




def kept_rows(n: int = 24) -> list[dict]:
    labels = ["billing", "shipping", "technical", "account"]
    rows = []
    for i in range(n):
        label = labels[i % 4]
        rows.append(records.make_row(f"Ticket {i}: a question about {label} number {i * 7 % 13}", label,
                                     "Route the support ticket to one team.", id=f"syn-{i:06d}",
                                     status="kept", reason="", scores={}, meta={}))
    return rows


def configure(project: Project, student: Path) -> Project:
    config = project.config
    config.student.model = str(student)
    t = config.training
    t.max_steps, t.batch_size, t.max_length = 40, 4, 384
    t.logging_steps, t.eval_steps, t.save_steps = 1, 5, 20
    t.lora_rank = 4
    config.evaluation.max_tokens = 8
    config.evaluation.max_examples = 6
    config.evaluation.bootstrap = 50
    config.evaluation.device = "cpu"
    config.training.device = "cpu"
    project.save_config(config)
    return project




def add_run(project: Project, student: Path, run_id: str = RUN_ID, *, evaluated: bool = True) -> Path:
    """A finished LoRA run with a loss history and (optionally) a fixed evaluation."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    run_dir = project.runs_dir / run_id
    (run_dir / "adapter").mkdir(parents=True)
    model = AutoModelForCausalLM.from_pretrained(str(student), dtype=torch.float32)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(str(student)).save_pretrained(run_dir / "adapter")
    (run_dir / "config.json").write_text(json.dumps({
        "run_id": run_id, "created": "2026-01-01T12:00:00+00:00", "method": "lora", "max_steps": 40,
        "student": {"ref": str(student), "folder": str(student)}}))
    (run_dir / "state.json").write_text(json.dumps({
        "status": "finished", "step": 40, "max_steps": 40, "final_loss": 0.412, "final_eval_loss": 0.530}))
    lines = []
    for step in range(1, 41):
        loss = 2.4 * (0.93 ** step) + 0.35 + (0.05 if step % 3 == 0 else 0.0)
        line = {"step": step, "epoch": step / 10, "loss": round(loss, 4), "eval_loss": None,
                "learning_rate": 2e-4, "tokens_per_second": 900.0, "elapsed": step * 0.5}
        if step % 8 == 0:
            line["eval_loss"] = round(loss + 0.15, 4)
        lines.append(json.dumps(line))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if evaluated:
        write_eval(run_dir)
    return run_dir


def write_eval(run_dir: Path) -> None:
    labels = ["billing", "shipping", "technical", "account"]
    rows = []
    for i in range(12):
        ref = labels[i % 4]
        teacher = ref if i % 5 else labels[(i + 1) % 4]
        tuned = ref if i % 3 else labels[(i + 2) % 4]
        base = ref if i % 4 == 0 else "I think this is about something"
        text = MARKUP if i == 2 else f"Test ticket {i}: customer writes about {ref} issue number {i}"
        rows.append({"index": i, "id": f"t{i}", "input": text, "system": "", "reference": ref, "outputs": {
            k: {"text": v, "finish_reason": "stop", "tokens": 2, "seconds": 0.05, "batched": 1,
                "score": float(v == ref), "scores": {"accuracy": float(v == ref)}}
            for k, v in (("teacher", teacher), ("base", base), ("tuned", tuned))}})

    def acc(key):
        return sum(r["outputs"][key]["score"] for r in rows) / len(rows)
    metrics = {"run": run_dir.name, "task": "support-routing", "task_type": "classification",
               "headline": "accuracy", "n": len(rows), "test_source": "test.jsonl",
               "models": {k: {"accuracy": acc(k), "name": k, "mode": "chat"} for k in ("teacher", "base", "tuned")},
               "gap_closed": {"value": 0.86, "ci_low": 0.71, "ci_high": 0.97, "note": ""}, "judge": False}
    eval_dir = run_dir / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "metrics.json").write_text(json.dumps(metrics))
    (eval_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
