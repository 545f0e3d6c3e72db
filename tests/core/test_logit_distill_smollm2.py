"""End to end on the bundled models: the SmolLM2 GGUF teaches the SmolLM2 student token by token.

The teacher answers held-out inputs as generation answers a new one (the answer prompt, then the
recorder generation uses); writing new inputs is left out, since SmolLM2-135M rarely ends one before
the token limit and the point here is the logits, not the inputs."""
import json

import pytest

from stillroom.core import events, records
from stillroom.core.backends.base import SamplingParams
from stillroom.core.backends.llamacpp import LlamaCppModel
from stillroom.core.models import bundled_path
from stillroom.core.project import Project
from stillroom.core.prompts import Prompter, ask
from stillroom.core.teacher_topk import TopKRecorder, decode, read_records
from stillroom.core.train import train

pytestmark = pytest.mark.slow


def test_smollm2_gguf_teaches_the_smollm2_student_with_its_logits(tmp_path):
    project = Project.create(tmp_path / "demo", demo=True)
    cfg = project.config
    cfg.teacher.model = "bundled:smollm2-135m-instruct"
    cfg.generation.teacher_logprobs = 4
    t = cfg.training
    t.objective, t.include_seeds, t.validation_fraction = "logits", False, 0.0
    t.max_steps, t.batch_size, t.max_length, t.logging_steps, t.save_steps = 2, 2, 192, 1, 2
    project.save_config()
    project = Project.open(project.root)

    seen = []
    teacher = LlamaCppModel(bundled_path("smollm2-135m-instruct"), n_ctx=1024, n_threads=2)
    try:
        recorder = TopKRecorder(project, teacher, 4, seen.append)
        prompter = Prompter(cfg.task, "chat")
        rows = []
        for i, test_row in enumerate(project.tests()[:3]):
            text = records.user_text(test_row)
            request = prompter.answer(project.seeds()[:3], text, cfg.task.system_prompt)
            answer = ask(teacher, request, SamplingParams(max_tokens=12)).text.strip()
            row_id = records.synthetic_id(i)
            recorder.record(row_id, request, answer)
            rows.append({"id": row_id, "status": "kept", "reason": "", "scores": {}, "meta": {},
                         "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]})
    finally:
        teacher.close()
    project.synthetic_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    statuses = [e.message for e in seen if isinstance(e, events.Status)]
    assert any("shared tokenizer: 49152 tokens match" in s for s in statuses), statuses

    from stillroom.core.student import load_tokenizer, student_folder
    tokenizer = load_tokenizer(student_folder(cfg.student.model, project_dir=project.root))
    stored = read_records(project)
    for row in rows:
        topk = decode(stored[row["id"]])
        assert tokenizer.decode(topk.tokens) == records.answer_text(row)
        assert all(len(ids) == 4 for ids in topk.ids) and all(lp[0] >= lp[-1] for lp in topk.logprobs)
        assert topk.ids[0][0] == topk.tokens[0]        # greedy: the answer's first token is the teacher's best

    seen = []
    run = train(Project.open(project.root), on_event=seen.append)
    assert run.step == 2
    statuses = [e.message for e in seen if isinstance(e, events.Status)]
    assert any("logit distillation: shared tokenizer: 49152 tokens match" in s for s in statuses), statuses
    state = json.loads((run.run_dir / "state.json").read_text())
    assert state["logit_targets"] == {"distilled": 3, "fallback": 0, "without": 0}
    metrics = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if m.get("loss") is not None]
    assert logged and all(m["loss_ce"] > 0 and m["loss_kl"] >= 0 for m in logged)
    print(f"\nlogit distillation on SmolLM2 (loss, ce, kl): "
          f"{[(round(m['loss'], 3), m['loss_ce'], m['loss_kl']) for m in logged]}")
