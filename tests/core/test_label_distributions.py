"""The teacher's label distribution kept with each classification row, for chat teachers and servers."""
import math

import pytest

from fakes import FakeChatTeacher, FakeTeacher
from stillroom.core import records
from stillroom.core.generate import generate
from stillroom.core.labeling import logprob_label_distribution
from stillroom.core.project import Project


def make_project(tmp_path):
    project = Project.create(tmp_path / "proj", "classification")
    project.config.task.labels = ["billing", "shipping"]
    project.config.task.input_name, project.config.task.output_name = "Ticket", "Team"
    project.config.evaluation.test_fraction = 0.0
    project.save_config()
    project.save_seeds([records.make_row(f"seed number {i} is a question about {label} things", label)
                        for i, label in enumerate(["billing", "shipping"] * 3)])
    return Project.open(project.root)


def lp(p):
    return math.log(p)


def test_one_token_per_label():
    got = logprob_label_distribution([{" positive": lp(0.7), " negative": lp(0.2), " neutral": lp(0.05)}],
                                     ["negative", "positive"])
    assert got == {"negative": pytest.approx(0.2 / 0.9, abs=1e-4), "positive": pytest.approx(0.7 / 0.9, abs=1e-4)}


def test_labels_that_share_their_first_tokens_are_told_apart_later():
    tops = [{"label": lp(0.9), "other": lp(0.1)}, {"_a": lp(0.6), "_b": lp(0.3), "_c": lp(0.1)}]
    got = logprob_label_distribution(tops, ["label_a", "label_b", "label_c"])
    assert got == pytest.approx({"label_a": 0.6, "label_b": 0.3, "label_c": 0.1}, abs=1e-4)


def test_case_leading_space_and_a_label_missing_from_the_alternatives():
    tops = [{"\n": lp(0.5), " Billing": lp(0.3), "x": lp(0.2)}, {"Billing": lp(0.7), "Shipping": lp(0.2)}]
    got = logprob_label_distribution(tops, ["billing", "shipping", "account"])
    # billing 0.3 + 0.5 * 0.7, shipping 0.5 * 0.2; account shares what the listed tokens leave (0.5 * 0.1)
    total = 0.65 + 0.1 + 0.05
    assert got == pytest.approx({"billing": 0.65 / total, "shipping": 0.1 / total, "account": 0.05 / total},
                                abs=1e-4)


def test_an_answer_that_is_no_label_gives_no_distribution():
    assert logprob_label_distribution([{"The": lp(0.9)}], ["billing", "shipping"]) is None
    assert logprob_label_distribution(None, ["billing", "shipping"]) is None


def test_a_server_teachers_logprobs_become_label_probs(tmp_path):
    project = make_project(tmp_path)
    generate(project, 4, teacher=FakeTeacher(logprobs=True))
    for row in project.kept_rows():
        answer = records.answer_text(row)
        other = "shipping" if answer == "billing" else "billing"
        assert row["scores"]["label_probs"] == {answer: 0.8, other: 0.2}
        assert row["meta"]["label_probs_from"] == "logprobs"


def test_a_teacher_without_logprobs_keeps_none(tmp_path):
    project = make_project(tmp_path)
    generate(project, 2, teacher=FakeTeacher())
    assert all("label_probs" not in row["scores"] for row in project.kept_rows())


def test_a_chat_teacher_that_scores_gets_each_label_scored(tmp_path):
    project = make_project(tmp_path)
    generate(project, 4, teacher=FakeChatTeacher())
    rows = project.kept_rows()
    assert len(rows) == 4
    for row in rows:
        answer = records.answer_text(row)
        other = "shipping" if answer == "billing" else "billing"
        assert row["meta"]["mode"] == "chat" and row["meta"]["label_probs_from"] == "chat-scoring"
        assert row["scores"]["label_probs"] == {answer: 0.6, other: 0.4}


def test_openai_stream_logprobs_are_read_per_token():
    from openai.types import Completion as TextChunk
    from openai.types.chat import ChatCompletionChunk
    from stillroom.core.backends.openai import _top_logprobs
    chat = ChatCompletionChunk.model_validate({
        "id": "1", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "billing"}, "finish_reason": None,
                     "logprobs": {"content": [{"token": "billing", "logprob": -0.1, "bytes": None,
                                               "top_logprobs": [{"token": "billing", "logprob": -0.1, "bytes": None},
                                                                {"token": "shipping", "logprob": -2.4,
                                                                 "bytes": None}]}]}}]})
    assert _top_logprobs(chat.choices[0].logprobs, chat=True) == [{"billing": -0.1, "shipping": -2.4}]
    text = TextChunk.model_validate({
        "id": "1", "object": "text_completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "text": " billing", "finish_reason": "stop",
                     "logprobs": {"tokens": [" billing"], "token_logprobs": [-0.1],
                                  "top_logprobs": [{" billing": -0.1, " shipping": -2.4}]}}]})
    assert _top_logprobs(text.choices[0].logprobs, chat=False) == [{" billing": -0.1, " shipping": -2.4}]
    assert _top_logprobs(None, chat=True) == []
