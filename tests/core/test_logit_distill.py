"""Token-level logit distillation: the shared-vocabulary check, the stored top-k targets, lining them up
with the student's answer tokens, and the loss (by hand, at zero, packed against padded)."""
from __future__ import annotations

import math

import pytest

from stillroom.core.errors import ModelError
from stillroom.core.logit_distill import (DistillCollator, LogitDistillLoss, collate_targets, prepare_rows,
                                          token_losses)
from stillroom.core.packing import IGNORE_INDEX
from stillroom.core.sft_data import Collator, render_row
from stillroom.core.teacher_topk import TopK, decode, encode, line_up
from stillroom.core.vocabulary import (Vocabulary, check_shared_vocabulary, gguf_vocabulary,
                                       tokenizer_vocabulary)


# ---------------------------------------------------------------- the vocabulary check

def test_same_tokenizer_matches_and_a_retrained_one_does_not():
    from tiny import build_tokenizer
    a, b = build_tokenizer(), build_tokenizer()
    shared = check_shared_vocabulary(tokenizer_vocabulary(a), tokenizer_vocabulary(b))
    assert shared.compared == len(a) and shared.teacher_extra == shared.student_extra == 0
    other = build_tokenizer(vocab_size=300)              # fewer merges: same start, ordinary ids missing
    with pytest.raises(ModelError, match="more tokens, and id 300"):
        check_shared_vocabulary(tokenizer_vocabulary(a), tokenizer_vocabulary(other))


def test_a_different_token_at_one_id_is_named():
    teacher = Vocabulary(("<s>", "a", "Ġb", "c"), frozenset({0}))
    student = Vocabulary(("<s>", "a", "b", "c"), frozenset({0}))
    with pytest.raises(ModelError, match=r"id 2 is 'Ġb' for the teacher and 'b' for the student"):
        check_shared_vocabulary(teacher, student)


def test_extra_special_tokens_at_the_end_are_tolerated_ordinary_ones_are_not():
    teacher = Vocabulary(("<s>", "a", "b"), frozenset({0}))
    student = Vocabulary(("<s>", "a", "b", "<|tool|>"), frozenset({0, 3}))
    shared = check_shared_vocabulary(teacher, student)
    assert (shared.compared, shared.teacher_extra, shared.student_extra) == (3, 0, 1)
    with pytest.raises(ModelError, match="the student has 1 more tokens"):
        check_shared_vocabulary(teacher, Vocabulary(student.tokens, frozenset({0})))


def test_the_bundled_gguf_shares_its_tokenizer_with_the_smollm2_tokenizer():
    from tiny import build_tokenizer, tiny_llama_dir
    from transformers import AutoTokenizer

    from stillroom.core.models import bundled_path
    gguf = gguf_vocabulary(bundled_path("smollm2-135m-instruct"))
    real = tokenizer_vocabulary(AutoTokenizer.from_pretrained(str(tiny_llama_dir())))
    assert check_shared_vocabulary(gguf, real).compared == 49152
    assert gguf.digest == real.digest
    with pytest.raises(ModelError, match="do not share a tokenizer"):
        check_shared_vocabulary(gguf, tokenizer_vocabulary(build_tokenizer()))


# ---------------------------------------------------------------- storage and lining up

def test_a_record_round_trips_with_float16_logprobs():
    import numpy as np
    topk = TopK([5, 9], [[5, 1, 2], [9, 3, 4]], [[-0.1234567, -2.5, -3.75], [-0.01, -5.3333, -7.0]])
    record = encode("syn-000001", topk, "abcd")
    back = decode(record)
    assert back.tokens == [5, 9] and back.ids == topk.ids
    assert back.logprobs == np.asarray(topk.logprobs, dtype=np.float16).astype(np.float32).tolist()
    assert back.logprobs != topk.logprobs                 # rounded, not stored in full


def test_line_up_keeps_the_answer_tokens_and_leaves_the_end_marker_to_cross_entropy():
    record = encode("r", TopK([7, 8], [[7, 1], [8, 2]], [[-0.5, -1.0], [-0.25, -2.0]]), "v")
    labels = [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 99]       # 99: the end-of-turn marker
    ids, logprobs = line_up(labels, record, truncated=False)
    assert ids == [[7, 1], [8, 2], []] and logprobs[2] == []
    assert line_up([IGNORE_INDEX, 7, 9, 99], record, truncated=False) is None      # another tokenization
    assert line_up([IGNORE_INDEX, 7], record, truncated=False) is None             # answer shorter
    assert line_up([IGNORE_INDEX, 7], record, truncated=True)[0] == [[7, 1]]       # cut at max_length


def test_prepare_rows_counts_distilled_fallback_and_plain_rows():
    good = encode("a", TopK([7], [[7, 1]], [[-0.1, -3.0]]), "v")
    bad = encode("b", TopK([6], [[6, 1]], [[-0.1, -3.0]]), "v")
    items = [{"input_ids": [1, 2, 7, 99], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 99], "teacher_topk": good},
             {"input_ids": [1, 2, 7, 99], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 99], "teacher_topk": bad},
             {"input_ids": [1, 2, 7, 99], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 99]}]
    assert prepare_rows(items, max_length=64) == {"distilled": 1, "fallback": 1, "without": 1}
    assert items[0]["distill_ids"] == [[7, 1], []] and "distill_ids" not in items[1]
    assert all("teacher_topk" not in item for item in items)


# ---------------------------------------------------------------- the loss

def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_loss_equals_a_hand_computed_value(temperature):
    import torch
    logits = [2.0, 1.0, 0.0, -1.0]
    q = _softmax(logits)
    teacher = {0: 0.6, 2: 0.3}                           # remainder 0.1 on ids 1 and 3
    p_buckets = [0.6, 0.3, 0.1]
    q_buckets = [q[0], q[2], q[1] + q[3]]

    def soften(ps):
        w = [x ** (1 / temperature) for x in ps]
        return [x / sum(w) for x in w]
    pt, qt = soften(p_buckets), soften(q_buckets)
    kl = temperature ** 2 * sum(a * math.log(a / b) for a, b in zip(pt, qt))
    ce = -math.log(q[0])
    weight = 0.3
    expected = (1 - weight) * ce + weight * kl

    ids = torch.tensor([list(teacher)])
    lps = torch.tensor([[math.log(v) for v in teacher.values()]])
    ce_t, kl_t, has = token_losses(torch.tensor([logits]), torch.tensor([0]), ids, lps, temperature)
    assert has.tolist() == [True]
    assert ce_t.item() == pytest.approx(ce, rel=1e-5) and kl_t.item() == pytest.approx(kl, rel=1e-4)

    loss = LogitDistillLoss(weight, temperature)
    # One row of two positions: position 0 predicts the answer token (id 0) at position 1.
    outputs = {"logits": torch.tensor([[logits, [0.0] * 4]])}
    loss.take_targets({"teacher_ids": ids, "teacher_logprobs": lps})
    assert loss(outputs, torch.tensor([[IGNORE_INDEX, 0]])).item() == pytest.approx(expected, rel=1e-4)
    parts = loss.logged_parts()
    assert parts["loss_ce"] == pytest.approx(ce, abs=1e-4) and parts["loss_kl"] == pytest.approx(kl, abs=1e-4)


def test_kl_is_zero_when_the_student_is_the_teacher():
    import torch
    torch.manual_seed(0)
    logits = torch.randn(5, 50) * 3
    logprobs = torch.log_softmax(logits, -1)
    top = logprobs.topk(8, dim=-1)
    for t in (1.0, 2.0):
        _, kl, has = token_losses(logits, torch.zeros(5, dtype=torch.long), top.indices, top.values, t)
        assert has.all() and kl.abs().max().item() < 1e-5
    _, kl, _ = token_losses(logits + torch.randn(5, 50), torch.zeros(5, dtype=torch.long), top.indices,
                            top.values, 1.0)
    assert kl.min().item() > 1e-3                      # and not zero when it is not


def test_tokens_without_targets_take_cross_entropy_alone():
    import torch
    logits = torch.randn(2, 10)
    ids = torch.tensor([[3, 0], [0, 0]])
    lps = torch.tensor([[-0.1, float("-inf")], [float("-inf"), float("-inf")]])
    ce, kl, has = token_losses(logits, torch.tensor([3, 4]), ids, lps)
    assert has.tolist() == [True, False] and kl[1].item() == 0.0


def _distilled_rows(tokenizer, count=3):
    """Rendered rows with made-up teacher targets on every answer token but the end marker."""
    import random
    rng = random.Random(1)
    rows = []
    answers = ["billing", "technical", "shipping please"]
    for n in range(count):
        messages = [{"role": "system", "content": "Route the ticket to one team."},
                    {"role": "user", "content": f"ticket number {n}: my parcel is late"},
                    {"role": "assistant", "content": answers[n % len(answers)]}]
        rendered = render_row(tokenizer, messages, 256)
        answer = [x for x in rendered.labels if x != IGNORE_INDEX][:-1]
        vocab = len(tokenizer)
        topk = TopK(answer, [[tok] + rng.sample(range(vocab), 3) for tok in answer],
                    [sorted((math.log(rng.uniform(0.01, 0.5)) for _ in range(4)), reverse=True)
                     for _ in answer])
        rows.append({"input_ids": rendered.input_ids, "labels": rendered.labels,
                     "teacher_topk": encode(f"r{n}", topk, "v")})
    rows.append({"input_ids": rows[0]["input_ids"], "labels": rows[0]["labels"]})     # a seed: CE only
    assert prepare_rows(rows, 256) == {"distilled": count, "fallback": 0, "without": 1}
    return rows


@pytest.mark.parametrize("select_logits", [False, True])
def test_packed_loss_equals_padded_loss(tiny, select_logits):
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    model = LlamaForCausalLM.from_pretrained(str(tiny)).eval()
    model.config.use_cache = False           # as in training: packed rows are told apart by position ids
    rows = _distilled_rows(tokenizer)
    values = {}
    for mode, share in (("pad", False), ("pack", False), ("pack", True)):
        collator = DistillCollator(Collator(tokenizer.pad_token_id, mode, select_logits, share_prefix=share))
        batch = collator(rows)
        if mode == "pack" and share:
            assert "attention_mask" in batch            # the system prompt really is shared
        loss = LogitDistillLoss(0.5, 2.0)
        inputs = loss.take_targets(dict(batch))
        labels = inputs.pop("labels")
        with torch.no_grad():
            values[(mode, share)] = loss(model(**inputs), labels).item()
    assert values[("pack", False)] == pytest.approx(values[("pad", False)], rel=1e-4)
    assert values[("pack", True)] == pytest.approx(values[("pad", False)], rel=1e-4)
    # The targets matter: the same batch with the seed's CE-only shape gives another value.
    plain = [{k: v for k, v in row.items() if not k.startswith("distill_")} for row in rows]
    batch = DistillCollator(Collator(tokenizer.pad_token_id, "pad", select_logits))(plain)
    loss = LogitDistillLoss(0.5, 2.0)
    inputs = loss.take_targets(dict(batch))
    labels = inputs.pop("labels")
    with torch.no_grad():
        assert loss(model(**inputs), labels).item() != pytest.approx(values[("pad", False)], rel=1e-3)


def test_collated_targets_follow_the_answer_tokens_row_by_row():
    rows = [{"labels": [IGNORE_INDEX, 4, 5], "distill_ids": [[4, 1], []], "distill_logprobs": [[-0.1, -2.0], []]},
            {"labels": [IGNORE_INDEX, IGNORE_INDEX, 6]}]
    out = collate_targets(rows)
    assert out["teacher_ids"].tolist() == [[4, 1], [0, 0], [0, 0]]
    finite = out["teacher_logprobs"].isfinite().tolist()
    assert finite == [[True, True], [False, False], [False, False]]


# ---------------------------------------------------------------- training with the logits objective

@pytest.mark.slow
def test_training_with_logits_logs_both_parts_and_counts_the_fallback(tmp_path, tiny):
    import json
    import random

    from transformers import AutoTokenizer

    from stillroom.core import records
    from stillroom.core.project import Project
    from stillroom.core.teacher_topk import TopKWriter
    from stillroom.core.train import train
    project = Project.create(tmp_path / "proj", demo=True)
    project.config.student.model = str(tiny)
    for key, value in dict(objective="logits", include_seeds=False, logging_steps=1, eval_steps=2, save_steps=2, batch_size=4,
                           lora_rank=4, lora_alpha=8, max_length=256, validation_fraction=0.15).items():
        setattr(project.config.training, key, value)
    project.save_config()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    writer = TopKWriter(project, tokenizer_vocabulary(tokenizer))
    rng = random.Random(0)
    rows = []
    for i, seed in enumerate(project.seeds()[:6]):
        row_id = records.synthetic_id(i)
        rows.append({**seed, "id": row_id, "status": "kept", "reason": "", "scores": {}, "meta": {}})
        answer = tokenizer(records.answer_text(seed), add_special_tokens=False)["input_ids"]
        if i == 0:
            answer = answer[::-1] + [5]                # not the student's tokens: cross-entropy only
        writer.write(row_id, TopK(answer, [[t] + rng.sample(range(len(tokenizer)), 3) for t in answer],
                                  [[-0.2, -2.0, -3.0, -4.0] for _ in answer]))
    project.synthetic_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = train(Project.open(project.root), overrides={"max_steps": 2})
    assert result.step == 2 and math.isfinite(result.final_loss)
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if m.get("loss") is not None]
    assert logged and all(m["loss_ce"] > 0 for m in logged) and any(m.get("loss_kl", 0) > 0 for m in logged)
    state = json.loads((result.run_dir / "state.json").read_text())
    targets = state["logit_targets"]
    train_ids = {r["id"] for r in map(json.loads, (result.run_dir / "data.jsonl").read_text().splitlines())
                 if r["split"] == "train"}
    fallback = int(records.synthetic_id(0) in train_ids)
    assert targets == {"distilled": result.train_rows - fallback, "fallback": fallback, "without": 0}
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["config"]["training"]["objective"] == "logits"
    data = [json.loads(line) for line in (result.run_dir / "data.jsonl").read_text().splitlines()]
    assert sum(1 for r in data if "teacher_topk" in r) == 6          # the run keeps its targets

    # Targets from a teacher with another tokenizer are refused before training.
    from tiny import build_tokenizer
    TopKWriter(project, tokenizer_vocabulary(build_tokenizer(vocab_size=300)))
    with pytest.raises(ModelError, match="do not share a tokenizer"):
        train(Project.open(project.root), overrides={"max_steps": 2})


# ---------------------------------------------------------------- generation keeps the targets

def _topk_teacher(tokenizer):
    from fakes import FakeChatTeacher

    class TopKTeacher(FakeChatTeacher):
        """The fake chat teacher, giving every answer token 0.9 and its next id the rest."""
        asked: list = []

        def vocabulary(self):
            return tokenizer_vocabulary(tokenizer)

        def answer_top_logprobs(self, context, answer, k):
            self.asked.append((context, answer))
            ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            return TopK(ids, [[t, t + 1][:k] for t in ids], [[math.log(0.9), math.log(0.1)][:k] for _ in ids])
    return TopKTeacher()


def _qa_project(tmp_path, student):
    from stillroom.core import records
    from stillroom.core.project import Project
    project = Project.create(tmp_path / "proj", "qa")
    project.config.student.model = str(student)
    project.config.generation.teacher_logprobs = 2
    project.config.evaluation.test_fraction = 0.0
    project.save_config()
    project.save_seeds([records.make_row(f"seed question number {i} about parcels", f"answer {i}")
                        for i in range(6)])
    return Project.open(project.root)


def test_generation_keeps_the_teachers_top_k_for_every_kept_answer(tmp_path, tiny):
    from transformers import AutoTokenizer

    from stillroom.core import records
    from stillroom.core.events import Status
    from stillroom.core.generate import generate
    from stillroom.core.teacher_topk import read_records, read_teacher_vocabulary
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    project = _qa_project(tmp_path, tiny)
    teacher = _topk_teacher(tokenizer)
    seen = []
    generate(project, 3, teacher=teacher, on_event=seen.append)
    kept = project.kept_rows()
    stored = read_records(project)
    assert len(kept) == 3 and {r["id"] for r in kept} <= set(stored)
    for row in kept:
        topk = decode(stored[row["id"]])
        assert tokenizer.decode(topk.tokens) == records.answer_text(row)
        assert topk.ids == [[t, t + 1] for t in topk.tokens]
    # The teacher scored exactly the answers it gave, after the prompt it was asked with.
    assert [answer for _, answer in teacher.asked] == [records.answer_text(r) for r in kept]
    assert all(isinstance(context, list) and context[-1]["role"] == "user" for context, _ in teacher.asked)
    assert read_teacher_vocabulary(project).digest == tokenizer_vocabulary(tokenizer).digest
    assert any("shared tokenizer" in e.message for e in seen if isinstance(e, Status))


def test_teacher_logprobs_need_a_teacher_that_gives_them_and_a_shared_tokenizer(tmp_path, tiny):
    from fakes import FakeChatTeacher
    from tiny import build_tokenizer

    from stillroom.core.errors import ConfigError
    from stillroom.core.generate import generate
    project = _qa_project(tmp_path, tiny)
    with pytest.raises(ConfigError, match="generation.teacher_logprobs = 2 needs a llama.cpp teacher"):
        generate(project, 1, teacher=FakeChatTeacher())
    with pytest.raises(ModelError, match="do not share a tokenizer"):
        generate(project, 1, teacher=_topk_teacher(build_tokenizer(vocab_size=300)))
