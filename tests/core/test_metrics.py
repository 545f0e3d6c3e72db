import json
import math

import pytest

from stillroom.core import metrics
from stillroom.core.tasks import Classification, Extraction, kind_named


def test_classification_hand_computed():
    refs = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", None, "a"]
    report = metrics.classification_report(preds, refs, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(2 / 5)
    assert report["unparseable"] == 1
    # a: tp1 fp1 fn1 -> P .5 R .5 F .5 ; b: tp1 fp1 fn1 -> .5 ; c: tp0 -> 0
    assert report["per_label"]["a"]["f1"] == pytest.approx(0.5)
    assert report["per_label"]["b"]["f1"] == pytest.approx(0.5)
    assert report["per_label"]["c"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert report["confusion"] == {"a": {"a": 1, "b": 1}, "b": {"b": 1, "(unparseable)": 1}, "c": {"a": 1}}


def test_classification_answers_are_parsed_to_labels():
    kind = Classification(("billing", "shipping"))
    assert kind.score_example(" Billing.", "billing") == {"label": "billing", "accuracy": 1.0}
    assert kind.score_example("shipping, I think", "billing")["accuracy"] == 0.0
    unparsed = kind.score_example("either shipping or billing", "billing")
    assert unparsed == {"label": None, "accuracy": 0.0}
    scores = [kind.score_example(a, r) for a, r in
              [("billing", "billing"), ("no idea", "shipping"), ("shipping", "shipping")]]
    agg = kind.aggregate(["billing", "no idea", "shipping"], ["billing", "shipping", "shipping"], scores)
    assert agg["accuracy"] == pytest.approx(2 / 3)
    assert agg["unparseable"] == 1
    # billing: P1 R1 F1 ; shipping: tp1 fn1 -> P1 R.5 F .667
    assert agg["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)


def test_exact_match_and_token_f1_squad_style():
    assert metrics.exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert metrics.exact_match("Eiffel", "eiffel tower") == 0.0
    # pred: [paris, france]  ref: [paris] -> P .5 R 1 F .667
    assert metrics.token_f1("Paris, France", "Paris") == pytest.approx(2 / 3)
    assert metrics.token_f1("", "") == 1.0
    assert metrics.token_f1("", "x") == 0.0
    assert metrics.token_f1("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)


def test_rouge_l_and_chrf():
    assert metrics.rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS of [a b c d] and [a c d e] is 3 -> P .75 R .75 F .75
    assert metrics.rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert metrics.chrf("hello world", "hello world") == pytest.approx(1.0)
    assert 0 < metrics.chrf("hello world", "hello there") < 1
    assert metrics.chrf("xyz", "hello") == 0.0


def test_extraction_fields():
    kind = Extraction((), json.dumps({"type": "object", "required": ["name"],
                                      "properties": {"name": {"type": "string"}}}))
    ref = '{"name": "Ada Lovelace", "year": 1815, "tags": ["math", "poetry"], "addr": {"city": "London"}}'
    perfect = kind.score_example('```json\n{"tags": ["poetry", "math"], "name": "ada  lovelace", '
                                          '"year": 1815.0, "addr": {"city": "London"}}\n```', ref)
    assert perfect["json_valid"] == 1.0 and perfect["schema_valid"] == 1.0
    assert perfect["field_f1"] == pytest.approx(1.0)
    # 2 predicted fields (name right, year wrong, empty note ignored), 4 reference fields
    partial = kind.score_example('{"name": "Ada Lovelace", "year": 1816, "note": null}', ref)
    assert partial["field_precision"] == pytest.approx(0.5)
    assert partial["field_recall"] == pytest.approx(0.25)
    assert partial["field_f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    bad = kind.score_example("name: Ada", ref)
    assert bad["json_valid"] == 0.0 and bad["field_f1"] == 0.0
    no_schema = kind.score_example('{"year": 1815}', ref)
    assert no_schema["json_valid"] == 1.0 and no_schema["schema_valid"] == 0.0
    agg = kind.aggregate([], [], [perfect, partial, bad])
    assert agg["json_valid"] == pytest.approx(2 / 3)
    # micro: tp 4+1+0=5, predicted 4+2+0=6, reference 4+4+4=12
    assert agg["field_precision_micro"] == pytest.approx(5 / 6)
    assert agg["field_recall_micro"] == pytest.approx(5 / 12)


def test_gap_closed_value_and_edge_cases():
    assert metrics.gap_closed(0.9, 0.5, 0.8) == pytest.approx(0.75)
    assert metrics.gap_closed(0.5, 0.5, 0.8) is None
    gap = metrics.bootstrap_gap_closed([1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], resamples=200, seed=0)
    assert gap.value == pytest.approx(0.5)
    tie = metrics.bootstrap_gap_closed([1, 0], [1, 0], [1, 1], resamples=100)
    assert tie.value is None and "no gap" in tie.note
    assert metrics.bootstrap_gap_closed([], [], [], resamples=10).value is None
    # A baseline above the teacher: (0.25 − 0.75) / (0.5 − 0.75) would read as 200% closed.
    above = metrics.bootstrap_gap_closed([1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], resamples=100,
                                         base_name="base scored")
    assert above.value is None and above.low is None
    assert above.note == "the base scored scores above the teacher, so there is no gap to close"


def test_bootstrap_is_deterministic_with_a_seed_and_covers_the_value():
    import random
    rng = random.Random(5)
    teacher = [float(rng.random() < 0.9) for _ in range(80)]
    base = [float(rng.random() < 0.4) for _ in range(80)]
    tuned = [float(rng.random() < 0.75) for _ in range(80)]
    one = metrics.bootstrap_gap_closed(teacher, base, tuned, resamples=500, seed=7)
    two = metrics.bootstrap_gap_closed(teacher, base, tuned, resamples=500, seed=7)
    other = metrics.bootstrap_gap_closed(teacher, base, tuned, resamples=500, seed=8)
    assert one == two
    assert (one.low, one.high) != (other.low, other.high)
    assert one.low < one.value < one.high
    assert one.valid_resamples == 500
    assert one.to_dict()["level"] == 0.95


def test_judge_prompt_and_parsing():
    chat = metrics.judge_request("chat", "Answer capitals.", "Capital of Peru?", "Lima", "It is Lima")
    assert chat.mode == "chat"
    body = chat.messages[-1]["content"]
    assert "Lima" in body and "It is Lima" in body and "1 (wrong) to 5" in body
    completion = metrics.judge_request("completion", "Answer capitals.", "Capital of Peru?", "Lima", "")
    assert completion.prompt.endswith("Candidate answer: (empty)\nScore:")
    assert completion.stop == ("\n",)
    assert metrics.parse_judge("5") == 1.0
    assert metrics.parse_judge(" Score: 4") == pytest.approx(0.75)
    assert metrics.parse_judge("**1**") == 0.0
    assert metrics.parse_judge("3/5 because") == pytest.approx(0.5)
    assert metrics.parse_judge("8/10") == pytest.approx(0.8)
    assert metrics.parse_judge("4 out of 5") == pytest.approx(0.75)
    assert metrics.parse_judge("excellent") is None
    assert metrics.parse_judge("9") is None


def test_headline_metric_choice():
    assert kind_named("classification")().headline_metric() == "accuracy"
    assert kind_named("extraction")().headline_metric() == "field_f1"
    assert kind_named("qa")().headline_metric("exact_match") == "exact_match"
    assert not math.isnan(metrics.mean([]))
