"""Classification answers from a base teacher by scoring the labels, not by sampling text.

A small base model asked to write a label leans hard towards one label whatever the input. Scoring
each label's log-probability after a stable few-shot prompt, minus the same score for a content-free
input ("N/A"), removes that lean (contextual calibration, Zhao et al. 2021). On the demo task the
bundled Gemma 270M goes from about 0.27 to 0.80 accuracy this way, and the stable prompt lets
llama.cpp keep its prefix cached, so a label costs a few tokens.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from . import records
from .backends.base import ScoresContinuations, supports
from .prompts import Prompter

CONTENT_FREE = "N/A"


def balanced_shots(rows: Sequence[dict], labels: Sequence[str], limit: int) -> list[dict]:
    """Up to `limit` rows, taken round-robin over labels so every label is shown equally often."""
    by_label = {label: [r for r in rows if records.answer_text(r) == label] for label in labels}
    out: list[dict] = []
    depth = 0
    while len(out) < limit and any(depth < len(v) for v in by_label.values()):
        for label in labels:
            if depth < len(by_label[label]) and len(out) < limit:
                out.append(by_label[label][depth])
        depth += 1
    return out


class LabelScorer:
    """Labels inputs with a model that can score continuations (see LlamaCppModel.score_continuations)."""

    def __init__(self, model, prompter: Prompter, shots: Sequence[dict], labels: Sequence[str],
                 system: str = ""):
        self.model = model
        self.prompter = prompter
        self.shots = list(shots)
        self.labels = list(labels)
        self.system = system
        self._prior: Optional[list[float]] = None

    @staticmethod
    def available(model, mode: str) -> bool:
        return mode == "completion" and supports(model, ScoresContinuations)

    def _scores(self, text: str) -> list[float]:
        request = self.prompter.answer(self.shots, text, self.system)
        return self.model.score_continuations(request.prompt, [" " + label for label in self.labels])

    def prior(self) -> list[float]:
        if self._prior is None:
            self._prior = self._scores(CONTENT_FREE)
        return self._prior

    def label(self, text: str) -> tuple[str, dict]:
        """The calibrated best label and the calibrated probability of every label."""
        raw = self._scores(text)
        calibrated = [s - p for s, p in zip(raw, self.prior())]
        top = max(calibrated)
        weights = [math.exp(c - top) for c in calibrated]
        total = sum(weights)
        probs = {label: round(w / total, 4) for label, w in zip(self.labels, weights)}
        best = self.labels[calibrated.index(top)]
        return best, probs
