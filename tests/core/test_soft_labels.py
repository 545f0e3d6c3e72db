"""training.objective = "soft-labels": the student's label distribution learns the teacher's."""
import json
import math

import pytest

from stillroom.core import records
from stillroom.core.errors import ConfigError, DataError
from stillroom.core.packing import IGNORE_INDEX
from stillroom.core.project import Project
from stillroom.core.sft_data import Collator, render_row, render_rows
from stillroom.core.soft_labels import (SoftLabelCollator, check_rows, label_log_probs, row_fields,
                                        soft_label_loss, teacher_distribution)

LABELS = ["billing", "shipping", "technical"]


def generated(i, text, answer, probs):
    row = records.make_row(text, answer, system="Route the ticket.")
    return {**row, "id": records.synthetic_id(i), "scores": {"label_probs": dict(zip(LABELS, probs))}}


ROWS = [generated(1, "My card was charged twice for one order.", "billing", [0.7, 0.2, 0.1]),
        generated(2, "Where is my parcel?", "shipping", [0.1, 0.6, 0.3]),
        records.make_row("The app crashes when I open it.", "technical", system="Route the ticket.")]


@pytest.fixture(scope="module")
def student(tiny):
    from stillroom.core.student import load_student, load_tokenizer
    model, _ = load_student(str(tiny))
    model.config.use_cache = False        # as in training: packed rows are told apart by position ids
    return model, load_tokenizer(tiny, for_training=True)


def rendered(tokenizer, rows=ROWS):
    return render_rows(tokenizer, rows, [], 128, extra=row_fields(tokenizer, LABELS, 128)).train


def loss_of(model, collator, features, **settings):
    import torch
    batch = collator(features)
    soft, labels = batch.pop("soft_labels"), batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
    return float(soft_label_loss(logits, labels, soft, keep=batch.get("logits_to_keep"), **settings))


def test_targets_are_the_teachers_distribution_or_a_seeds_own_label():
    assert teacher_distribution(ROWS[0], LABELS) == pytest.approx([0.7, 0.2, 0.1])
    assert teacher_distribution(ROWS[2], LABELS) == [0.0, 0.0, 1.0]
    assert teacher_distribution({**ROWS[0], "scores": {}}, LABELS) is None


def test_loss_equals_the_hand_computed_value(student):
    """Each label's sequence log-probability is computed from the row rendered with that label alone;
    (1 - w) * CE(answer) + w * T^2 * KL(teacher^T || student^T) by hand."""
    import torch
    model, tokenizer = student
    w, t = 0.3, 2.0
    ce_sum, ce_count, kls = 0.0, 0, []
    for row in ROWS:
        label_lp = []
        for label in LABELS:
            variant = render_row(tokenizer, row["messages"][:-1] + [{"role": "assistant", "content": label}], 128)
            with torch.no_grad():
                lp = model(input_ids=torch.tensor([variant.input_ids])).logits[0].log_softmax(-1)
            scored = [float(lp[i - 1, tok]) for i, (tok, lab) in enumerate(zip(variant.input_ids, variant.labels))
                      if lab != IGNORE_INDEX]
            label_lp.append(sum(scored))
            if label == records.answer_text(row):
                ce_sum -= sum(scored)
                ce_count += len(scored)
        teacher = teacher_distribution(row, LABELS)
        p = [x ** (1 / t) for x in teacher]
        p = [x / sum(p) for x in p]
        z = math.log(sum(math.exp(x / t) for x in label_lp))
        q = [x / t - z for x in label_lp]
        kls.append(sum(pi * (math.log(pi) - qi) for pi, qi in zip(p, q) if pi > 0))
    expected = (1 - w) * ce_sum / ce_count + w * t * t * sum(kls) / len(kls)
    collator = SoftLabelCollator(Collator(tokenizer.pad_token_id, "pack", True, share_prefix=True), tree=True)
    assert loss_of(model, collator, rendered(tokenizer), weight=w, temperature=t) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("mode,tree,select", [("pack", False, True), ("pad", False, True), ("group", False, False),
                                              ("pack", True, False)])
def test_same_loss_with_packing_on_and_off(student, mode, tree, select):
    """Labels scored as branches of one packed sequence (tree mask) or as rows of their own, packed or
    padded, with or without selected logits: one loss."""
    model, tokenizer = student
    features = rendered(tokenizer)
    reference = SoftLabelCollator(Collator(tokenizer.pad_token_id, "pack", True, share_prefix=True), tree=True)
    other = SoftLabelCollator(Collator(tokenizer.pad_token_id, mode, select, share_prefix=tree), tree=tree)
    settings = dict(weight=0.5, temperature=1.5)
    assert loss_of(model, other, features, **settings) == pytest.approx(loss_of(model, reference, features, **settings),
                                                                        rel=1e-5)


def test_the_tree_batch_costs_label_tokens_not_prompts(student):
    model, tokenizer = student
    features = rendered(tokenizer)
    tree = SoftLabelCollator(Collator(tokenizer.pad_token_id, "pack", share_prefix=True), tree=True)(features)
    rows = Collator(tokenizer.pad_token_id, "pack", share_prefix=True)(
        [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
    extra = tree["input_ids"].shape[1] - rows["input_ids"].shape[1]
    assert 0 < extra <= sum(len(b) for f in features for b in f["label_branches"])


def test_without_the_soft_term_it_is_the_sft_loss(student):
    import torch
    from stillroom.core.sft_data import selected_logits_loss
    model, tokenizer = student
    features = rendered(tokenizer)
    plain = Collator(tokenizer.pad_token_id, "pack", True, share_prefix=True)(
        [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
    labels = plain.pop("labels")
    with torch.no_grad():
        sft = float(selected_logits_loss(model(**plain), labels))
    collator = SoftLabelCollator(Collator(tokenizer.pad_token_id, "pack", True, share_prefix=True), tree=True)
    assert loss_of(model, collator, features, weight=0.0, temperature=2.0) == pytest.approx(sft, rel=1e-5)


def test_gradient_moves_the_students_labels_towards_the_teacher(tiny):
    import torch
    from stillroom.core.student import load_student, load_tokenizer
    model, _ = load_student(str(tiny))
    model.config.use_cache = False
    tokenizer = load_tokenizer(tiny, for_training=True)
    features = rendered(tokenizer, ROWS[:1])            # teacher: billing 0.7, shipping 0.2, technical 0.1
    collator = SoftLabelCollator(Collator(tokenizer.pad_token_id, "pack", True, share_prefix=True), tree=True)
    batch = collator(features)
    soft, labels = batch.pop("soft_labels"), batch.pop("labels")
    teacher = torch.tensor([[0.7, 0.2, 0.1]])

    def student_probs():
        with torch.no_grad():
            logits = model(**batch).logits
        return label_log_probs(logits, soft, batch["logits_to_keep"]).softmax(-1)

    def distance(p):
        return float((teacher * (teacher.log() - p.log())).sum())

    before = student_probs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        optimizer.zero_grad()
        logits = model(**batch).logits
        soft_label_loss(logits, labels, soft, keep=batch["logits_to_keep"], weight=1.0, temperature=1.0).backward()
        optimizer.step()
    after = student_probs()
    assert distance(after) < distance(before) * 0.8
    assert after[0, 0] > before[0, 0]


def test_generated_rows_without_a_distribution_are_an_error():
    rows = ROWS + [{**ROWS[1], "id": "syn-000007", "scores": {}}]
    with pytest.raises(DataError, match=r"proj: 1 of 4 training rows have no teacher label distribution "
                                        r"\(scores.label_probs; first: syn-000007\)"):
        check_rows(rows, LABELS, "proj")
    check_rows(ROWS, LABELS, "proj")


def test_soft_labels_on_a_task_without_labels_is_a_config_error(tmp_path):
    project = Project.create(tmp_path / "qa", "qa")
    text = project.config_path.read_text().replace('objective = "sft"', 'objective = "soft-labels"')
    project.config_path.write_text(text)
    with pytest.raises(ConfigError, match=r"stillroom.toml:\d+: training.objective = \"soft-labels\" needs a "
                                          r"classification task with task.labels; this task is qa"):
        Project.open(project.root)


@pytest.mark.slow
def test_training_with_soft_labels_records_the_objective(tmp_path, tiny):
    from stillroom.core.train import train
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.model = str(tiny)
    for key, value in dict(objective="soft-labels", logging_steps=1, eval_steps=2, save_steps=2, batch_size=4,
                           lora_rank=4, lora_alpha=8, max_length=256, validation_fraction=0.15).items():
        setattr(project.config.training, key, value)
    project.save_config()
    labels = project.config.task.labels
    rows = []
    for i, seed in enumerate(project.seeds()[:6]):
        answer = records.answer_text(seed)
        probs = {label: (0.7 if label == answer else 0.3 / (len(labels) - 1)) for label in labels}
        rows.append({**seed, "id": records.synthetic_id(i), "status": "kept", "reason": "",
                     "scores": {"label_probs": probs}, "meta": {}})
    project.synthetic_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    project = Project.open(project.root)
    result = train(project, overrides={"max_steps": 2})
    assert result.step == 2 and result.final_loss is not None and math.isfinite(result.final_loss)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["config"]["training"]["objective"] == "soft-labels"
    data = [json.loads(line) for line in (result.run_dir / "data.jsonl").read_text().splitlines()]
    assert sum(1 for r in data if (r.get("scores") or {}).get("label_probs")) == 6

    rows[0]["scores"] = {}
    project.synthetic_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="1 of .* training rows have no teacher label distribution"):
        train(Project.open(project.root), overrides={"max_steps": 2})
