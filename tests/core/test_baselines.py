"""Baselines in every evaluation: base few-shot, base scored, the seed-only student; the figures beside
the headline; a classification answer that stops at its label."""
import json

import pytest

from stillroom.core import records
from stillroom.core.backends.base import SamplingParams
from stillroom.core.evaluate import Evaluation, evaluate, run_weights
from stillroom.core.evaluate import test_rows as held_out_rows
from stillroom.core.events import TrainStarted

from fakes import label_teacher_for as teacher_for
from tiny import demo_with_adapter, tiny_llama_dir

RUN = "20250101-000000"


@pytest.fixture
def project(tmp_path):
    project = demo_with_adapter(tmp_path / "proj", RUN, batch_size=4, max_tokens=6, bootstrap=200)
    # The run records its step count, so the seed-only student gets the same budget.
    run_dir = project.runs_dir / RUN
    (run_dir / "state.json").write_text(json.dumps({"status": "finished", "step": 2, "max_steps": 2}))
    config = project.config
    config.training.batch_size = 4
    config.training.validation_fraction = 0.0
    project.save_config(config)
    return project


def test_every_baseline_is_in_metrics_report_and_cli_table_and_the_seed_only_student_is_cached(project, capsys):
    from stillroom.tui.commands.eval import print_result
    seen = []
    result = evaluate(project, teacher=teacher_for(project), limit=4, on_event=seen.append)
    m = result.metrics
    assert list(m["models"]) == ["teacher", "base", "few_shot", "scored", "seed_only", "tuned"]
    assert m["baselines"] == ["few_shot", "scored", "seed_only"] and m["skipped_baselines"] == {}
    for row in result.records:
        assert set(row["outputs"]) == set(m["models"])
    # the figures beside the headline, each with an ordered 95% interval
    prompted, added = m["gap_closed_vs_prompted"], m["rows_added"]
    assert prompted["baseline"] in ("base", "few_shot", "scored")
    best = max(m["models"][k]["accuracy"] for k in ("base", "few_shot", "scored"))
    assert m["models"][prompted["baseline"]]["accuracy"] == best
    assert added["value"] == pytest.approx(m["models"]["tuned"]["accuracy"] - m["models"]["seed_only"]["accuracy"])
    over = m["tuned_minus_prompted"]
    assert over["baseline"] == prompted["baseline"] and over["ci_low"] <= over["value"] <= over["ci_high"]
    assert over["value"] == pytest.approx(m["models"]["tuned"]["accuracy"] - best)
    assert added["ci_low"] <= added["value"] <= added["ci_high"]
    if prompted["ci_low"] is not None:
        assert prompted["ci_low"] <= prompted["ci_high"]
    assert {"value", "ci_low", "ci_high", "level"} <= set(prompted) and {"value", "ci_low", "ci_high"} <= set(added)
    report = (result.eval_dir / "report.md").read_text()
    for title in ("| base few-shot |", "| base scored |", "| seed-only student |", "| base student |",
                  "gap closed vs best prompted", "tuned − best prompted", "tuned − seed-only"):
        assert title in report
    print_result(result)
    table = capsys.readouterr().out
    for title in ("base few-shot", "base scored", "seed-only student", "gap closed vs best prompted",
                  "tuned − seed-only"):
        assert title in table
    # the seed-only student was trained once, under runs/_baselines/, and is not a run of the project
    assert any(isinstance(e, TrainStarted) for e in seen)
    cached = [p for p in (project.runs_dir / "_baselines").glob("*/*") if p.is_dir()]
    assert len(cached) == 1 and (cached[0] / "adapter").is_dir()
    assert [p.name for p in project.run_dirs()] == [RUN]
    # a second evaluation with the same seeds and settings trains nothing
    config = project.config
    config.evaluation.baselines = ["seed-only"]
    project.save_config(config)
    again = []
    second = evaluate(project, teacher=teacher_for(project), limit=4, on_event=again.append)
    assert list(second.metrics["models"]) == ["teacher", "base", "seed_only", "tuned"]
    assert not any(isinstance(e, TrainStarted) for e in again)
    assert [p for p in (project.runs_dir / "_baselines").glob("*/*") if p.is_dir()] == cached
    assert second.metrics["models"]["seed_only"]["accuracy"] == m["models"]["seed_only"]["accuracy"]


def test_a_run_below_the_prompted_baseline_says_so_in_the_report_and_the_cli():
    from stillroom.core.evaluate import prompted_warning
    below = {"tuned_minus_prompted": {"value": -0.24, "ci_low": -0.35, "ci_high": -0.14, "baseline": "scored"}}
    assert prompted_warning(below) == ("the base scored does better than the tuned student (-0.240 [-0.350, "
                                       "-0.140]): prompting the base student beats this run")
    unsure = {"tuned_minus_prompted": {"value": 0.03, "ci_low": -0.08, "ci_high": 0.14, "baseline": "scored"}}
    assert prompted_warning(unsure) == "" and prompted_warning({}) == ""


def test_few_shot_prompt_shows_k_seeds_and_never_a_test_row(project):
    tests = project.tests()
    project.save_seeds(project.all_seeds() + tests[:3])       # test rows among the seeds must not be shown
    config = project.config
    config.evaluation.few_shot = 5
    project.save_config(config)
    evaluation = Evaluation(project, run_weights(project), held_out_rows(project))
    test_texts = {records.user_text(r) for r in tests}

    class ChatModel:
        supports_chat = True

    class CompletionModel:
        supports_chat = False

    for row in evaluation.tests:
        chat = evaluation.few_shot_request(ChatModel(), row)
        shown = [m["content"] for m in chat.messages[1:-1] if m["role"] == "user"]
        assert len(shown) == 5 and not test_texts & set(shown)
        assert chat.messages[-1]["content"] == records.user_text(row)
        completion = evaluation.few_shot_request(CompletionModel(), row).prompt
        assert completion.count("\n\n") == 6          # header, five shots, the row
        assert not any(records.one_line(t) in completion.rsplit("\n\n", 1)[0] for t in test_texts)


class ScoringModel:
    """A base student that can only score: the reference label of the row scores highest, and the
    labels before it in the list score just below it."""

    name = "scorer"
    supports_chat = False
    is_base = True

    def __init__(self, references: dict, labels: list):
        self.references, self.labels = references, labels
        self.calls = 0

    def score_continuations(self, prompt, continuations):
        self.calls += 1
        text = prompt.rsplit("\n\n", 1)[-1].split("\n", 1)[0].split(":", 1)[1].strip()
        best = self.labels.index(self.references[text])
        return [-1.0 if i == best else -1.5 + 0.1 * i for i in range(len(continuations))]


def test_scored_baseline_answers_the_argmax_label(project):
    tests = held_out_rows(project)[:8]
    evaluation = Evaluation(project, run_weights(project), tests)
    labels = list(project.config.task.labels)
    model = ScoringModel({records.one_line(records.user_text(r)): records.answer_text(r) for r in tests}, labels)
    evaluation.run_scored(model)
    assert model.calls == len(tests)
    for row, out in zip(tests, evaluation.outputs["scored"]):
        assert out["text"] == records.answer_text(row)
        assert max(out["label_probs"], key=out["label_probs"].get) == out["text"]
        # the last label would win by its own score alone; the argmax over all labels must not pick it
        assert out["text"] == labels[-1] or out["label_probs"][labels[-1]] < out["label_probs"][out["text"]]


def test_hf_scores_match_a_full_forward_pass_and_the_adapter_can_be_off(project):
    import torch
    from stillroom.core.evaluate import load_students
    base, tuned = load_students(project, run_weights(project))
    prompt = tuned.render_chat([{"role": "user", "content": "Where is my parcel?"}])
    labels = ["billing<|im_end|>", "shipping<|im_end|>", "technical"]
    # The second prompt shares most of the first: its scores reuse the kept prompt cache, and must
    # still be those of a full forward pass.
    later = tuned.render_chat([{"role": "user", "content": "Where is my refund, please?"}])
    for model, prompt in [(base, prompt), (tuned, prompt), (base, later), (tuned, later), (tuned, prompt)]:
        scores = model.score_continuations(prompt, labels)
        tok = model.tokenizer
        with torch.inference_mode(), (model.model.disable_adapter() if model is base else torch.no_grad()):
            for label, score in zip(labels, scores):
                p = tok(prompt, add_special_tokens=False)["input_ids"]
                c = tok(label, add_special_tokens=False)["input_ids"]
                logp = torch.log_softmax(model.model(input_ids=torch.tensor([p + c])).logits[0].float(), -1)
                assert score == pytest.approx(sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(c)),
                                              abs=1e-4)
    assert base.score_continuations(later, labels) != tuned.score_continuations(later, labels)


def test_decoding_stops_at_a_complete_label():
    from stillroom.core.backends.hf import HFModel
    model = HFModel.load(str(tiny_llama_dir()), device="cpu")
    conversation = [{"role": "user", "content": "Where is my parcel? It is late."}]
    free = model.chat(conversation, SamplingParams(max_tokens=16))
    ids = model.tokenizer(free.text, add_special_tokens=False)["input_ids"]
    assert free.completion_tokens == 16 and len(ids) >= 6
    # labels that are this model's own greedy answer cut short: a prefix of the answer
    short = model.tokenizer.decode(ids[:2]).strip()
    longer = model.tokenizer.decode(ids[:5]).strip()
    assert "\n" not in longer and longer.startswith(short) and longer != short
    stopped = model.chat(conversation, SamplingParams(max_tokens=16, answers=(short, "zzz")))
    assert stopped.text.strip() == short and stopped.finish_reason == "stop"
    assert stopped.completion_tokens < 16
    # a longer label that starts with the shorter one: decoding goes on to it
    on = model.chat(conversation, SamplingParams(max_tokens=16, answers=(short, longer)))
    assert on.text.strip() == longer and stopped.completion_tokens < on.completion_tokens < 16
    batch = model.chat_batch([conversation, conversation], SamplingParams(max_tokens=16, answers=(short,)))
    assert [c.text.strip() for c in batch] == [short, short]
