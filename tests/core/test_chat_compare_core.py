"""Headless pieces behind the Chat and Compare screens."""
import pytest

from stillroom.core import chat, compare
from stillroom.core.backends.base import Completion, SamplingParams
from stillroom.core.config import TaskConfig

TASK = TaskConfig(name="t", description="Route tickets.", type="classification", labels=["billing", "shipping"],
                  system_prompt="Route the ticket.", input_name="Ticket", output_name="Team")
SHOTS = [{"messages": [{"role": "user", "content": "card charged twice"},
                       {"role": "assistant", "content": "billing"}]}]


class Echo:
    """A model that answers with a fixed text, token by token, and remembers what it was asked."""
    name = "echo"
    is_base = False

    def __init__(self, supports_chat=True, reply="shipping please"):
        self.supports_chat = supports_chat
        self.reply = reply
        self.asked = []

    def _answer(self, params, on_token):
        for word in self.reply.split(" "):
            if on_token:
                on_token(word + " ")
        return Completion(self.reply, "stop", 3, len(self.reply.split()), 0.01)

    def chat(self, messages, params, on_token=None, cancel=None):
        self.asked.append(("chat", list(messages)))
        return self._answer(params, on_token)

    def complete(self, prompt, params, on_token=None, cancel=None):
        self.asked.append(("completion", prompt, params.stop))
        return self._answer(params, on_token)

    def close(self):
        pass


def test_chat_history_per_column_and_prompt_modes():
    conv = chat.Conversation(TASK, SHOTS)
    student, teacher = Echo(True, "billing"), Echo(False, "shipping")
    student_slot = chat.slot_for("tuned", student)
    teacher_slot = chat.slot_for("teacher", teacher)
    assert (student_slot.mode, student_slot.shots) == ("chat", False)
    assert (teacher_slot.mode, teacher_slot.shots) == ("completion", True)
    conv.ask("where is my parcel")
    tokens = []
    chat.respond(student, conv, student_slot, SamplingParams(), on_token=tokens.append)
    chat.respond(teacher, conv, teacher_slot, SamplingParams())
    assert "".join(tokens).strip() == "billing"
    assert conv.exchanges[-1].answers == {"tuned": "billing", "teacher": "shipping"}
    conv.ask("and my refund?")
    chat.respond(student, conv, student_slot, SamplingParams())
    chat.respond(teacher, conv, teacher_slot, SamplingParams())
    # the student sees the system prompt and its own earlier answer, no seed shots
    messages = student.asked[-1][1]
    assert messages[0] == {"role": "system", "content": "Route the ticket."}
    assert [m["content"] for m in messages[1:]] == ["where is my parcel", "billing", "and my refund?"]
    # the base teacher continues a few-shot prompt: seeds, then its own earlier turn, then the question
    _, prompt, stop = teacher.asked[-1]
    assert prompt.index("card charged twice") < prompt.index("where is my parcel\nTeam: shipping") \
        < prompt.index("Ticket: and my refund?\nTeam:")
    assert prompt.rstrip().endswith("Team:") and "\n\n" in stop
    assert "billing" not in prompt.split("where is my parcel")[1]      # never another column's answer
    conv.clear()
    assert len(conv) == 0
    with pytest.raises(ValueError):
        conv.ask("   ")


def _row(i, ref, teacher, base, tuned):
    return {"index": i, "input": f"ticket {i}", "reference": ref, "outputs": {
        k: {"text": v, "score": float(v == ref)} for k, v in (("teacher", teacher), ("base", base), ("tuned", tuned))}}


def test_compare_filters_and_word_diff():
    rows = [_row(0, "billing", "billing", "x", "billing"),
            _row(1, "billing", "billing", "x", "shipping"),      # teacher right, student wrong
            _row(2, "billing", "shipping", "x", "account"),      # both wrong, disagree
            _row(3, "billing", "Shipping.", "x", "shipping")]    # both wrong, agree (normalised)
    assert [r["index"] for r in compare.filter_rows(rows, "student-wrong")] == [1, 2, 3]
    assert [r["index"] for r in compare.filter_rows(rows, "teacher-right")] == [1]
    assert [r["index"] for r in compare.filter_rows(rows, "disagree")] == [1, 2]
    assert [r["index"] for r in compare.filter_rows(rows, "all", "ACCOUNT")] == [2]
    assert compare.counts(rows) == {"all": 4, "student-wrong": 3, "teacher-right": 1, "disagree": 2}
    with pytest.raises(ValueError):
        compare.filter_rows(rows, "nope")
    diff = compare.word_diff("the parcel is late", "The parcel was late")
    assert [p for p, changed in diff if changed] == ["is"]
    assert "".join(p for p, _ in diff) == "the parcel is late"
