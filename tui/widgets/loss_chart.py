"""The loss chart: training and validation loss against step (textual-plotext), in the theme's colours."""
from __future__ import annotations

from textual.color import Color
from textual_plotext import PlotextPlot

from stillroom import themes


class LossChart(PlotextPlot):
    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 8; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train: list[tuple[int, float]] = []
        self.eval: list[tuple[int, float]] = []
        self.max_steps = 0
        self.title = ""

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.replot())
        self.replot()

    def clear(self, max_steps: int = 0, title: str = "") -> None:
        self.train, self.eval = [], []
        self.max_steps = max_steps
        self.title = title
        self.replot()

    def load(self, lines: list[dict], max_steps: int = 0, title: str = "") -> None:
        """Points from a run's metrics.jsonl lines."""
        self.train = [(int(m["step"]), float(m["loss"])) for m in lines if m.get("loss") is not None]
        self.eval = [(int(m["step"]), float(m["eval_loss"])) for m in lines if m.get("eval_loss") is not None]
        self.max_steps = max_steps
        self.title = title
        self.replot()

    def add_train(self, step: int, loss: float) -> None:
        self.train = [p for p in self.train if p[0] < step] + [(step, loss)]
        self.replot()

    def add_eval(self, step: int, loss: float) -> None:
        self.eval = [p for p in self.eval if p[0] < step] + [(step, loss)]
        self.replot()

    @property
    def points(self) -> int:
        return len(self.train) + len(self.eval)

    def _rgb(self, name: str) -> tuple[int, int, int]:
        return Color.parse(themes.color(self.app, name)).rgb

    def replot(self) -> None:
        if not self.is_mounted:
            return
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("step")
        if self.train:
            plt.plot([s for s, _ in self.train], [v for _, v in self.train], label="train",
                     color=self._rgb("chart-train"), marker="braille")
            if len(self.train) < 3:          # a lone point is too small to see in braille
                plt.scatter([s for s, _ in self.train], [v for _, v in self.train],
                            color=self._rgb("chart-train"), marker="●")
        if self.eval:
            plt.plot([s for s, _ in self.eval], [v for _, v in self.eval], label="validation",
                     color=self._rgb("chart-eval"), marker="braille")
            plt.scatter([s for s, _ in self.eval], [v for _, v in self.eval],
                        color=self._rgb("chart-eval"), marker="●")
        if self.max_steps:
            plt.xlim(0, self.max_steps)
        if not self.train and not self.eval:
            plt.xlim(0, max(1, self.max_steps))
            plt.ylim(0, 1)
        self.refresh()
