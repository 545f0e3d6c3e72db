from stillroom.core import records
from stillroom.core.config import TaskConfig
from stillroom.core.labeling import CONTENT_FREE, LabelScorer, balanced_shots
from stillroom.core.prompts import Prompter


class BiasedScorer:
    """Scores every label with a strong lean towards "billing"; the input's own word adds a smaller push."""

    def __init__(self):
        self.prompts = []

    def score_continuations(self, prompt, continuations):
        self.prompts.append(prompt)
        text = prompt.rsplit("Ticket:", 1)[-1]
        scores = []
        for cont in continuations:
            label = cont.strip()
            score = -1.0 + (3.0 if label == "billing" else 0.0)
            if label in text and CONTENT_FREE not in text:
                score += 2.0
            scores.append(score)
        return scores


def test_calibration_removes_the_models_lean():
    task = TaskConfig(labels=["billing", "shipping"], input_name="Ticket", output_name="Team",
                      description="Route tickets.")
    seeds = [records.make_row(f"about {label} {i}", label) for i in range(3) for label in ("billing", "shipping")]
    model = BiasedScorer()
    scorer = LabelScorer(model, Prompter(task, "completion"), seeds, task.labels)
    label, probs = scorer.label("my shipping is late")
    assert label == "shipping"      # raw scores say billing (2 against 1); calibrated, shipping wins
    assert probs["shipping"] > 0.8
    assert scorer.label("a billing question")[0] == "billing"
    # the few-shot prefix is the same for every input (so llama.cpp can keep it cached)
    prefixes = {p.rsplit("Ticket:", 1)[0] for p in model.prompts}
    assert len(prefixes) == 1


def test_balanced_shots_round_robin():
    rows = [records.make_row(f"{label} {i}", label) for label in ("a", "b", "c") for i in range(4)]
    shots = balanced_shots(rows, ["a", "b", "c"], 7)
    assert [records.answer_text(r) for r in shots] == ["a", "b", "c", "a", "b", "c", "a"]
