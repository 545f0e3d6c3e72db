"""End to end on the bundled student: LoRA on the demo project's seeds, then the adapter loads and answers."""
import pytest

from stillroom.core import events
from stillroom.core.project import Project
from stillroom.core.runs import list_runs, read_metrics
from stillroom.core.train import train

pytestmark = pytest.mark.slow


def test_lora_on_bundled_smollm2_lowers_the_loss_and_the_adapter_generates(tmp_path):
    project = Project.create(tmp_path / "demo", demo=True)
    t = project.config.training
    t.max_steps, t.batch_size, t.max_length = 6, 4, 128
    t.learning_rate, t.warmup_ratio, t.logging_steps, t.eval_steps, t.save_steps = 1e-3, 0.0, 1, 6, 6
    project.save_config()
    project = Project.open(project.root)
    seen = []
    result = train(project, on_event=seen.append)
    assert not result.cancelled and result.step == 6
    losses = [m["loss"] for m in read_metrics(result.run_dir)]
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < losses[0] - 0.1, losses
    assert result.final_eval_loss is not None
    started = next(e for e in seen if isinstance(e, events.TrainStarted))
    assert started.truncated == 0 and started.train_rows + started.validation_rows == len(project.training_rows())
    assert list_runs(project)[-1].status == "finished"
    print(f"\nSmolLM2-135M LoRA: {result.tokens_per_second:.0f} tok/s, peak {result.peak_memory_mb:.0f} MB, "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    from stillroom.core.student import load_student
    model, tokenizer = load_student(project.config.student.model, project_dir=project.root,
                                    adapter=result.output_dir)
    row = project.tests()[0]
    inputs = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert answer
