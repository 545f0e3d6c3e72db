"""One test example in full: the input and reference above, the teacher's, base student's and tuned
student's answers next to each other, with the words that differ from the reference highlighted."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from stillroom import themes
from stillroom.core.compare import is_right, word_diff
from stillroom.core.evaluate import MODELS
from stillroom.core.models import ROLE_TITLES


def marked(app, text: str, other: str) -> Text:
    out = Text()
    highlight = f"on {themes.color(app, 'diff-background')}"
    for piece, changed in word_diff(text, other):
        out.append(piece, style=highlight if changed else "")
    return out


class AnswersDialog(ModalScreen[None]):
    DEFAULT_CSS = """
    AnswersDialog { align: center middle; }
    AnswersDialog > Vertical {
        width: 96%; height: 90%; border: round $primary; background: $surface; padding: 0 1;
    }
    AnswersDialog #answers-head { height: auto; max-height: 12; margin-bottom: 1; }
    AnswersDialog #answers-cols { height: 1fr; }
    AnswersDialog .answer { width: 1fr; height: 1fr; border: round $panel-lighten-2; padding: 0 1;
                            border-title-color: $text; }
    AnswersDialog .answer.right { border: round $success; }
    AnswersDialog .answer.wrong { border: round $error; }
    AnswersDialog #answers-hint { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("down,j", "step(1)", "Next example"),
        Binding("up,k", "step(-1)", "Previous example"),
    ]

    def __init__(self, rows: list[dict], index: int, metric: str = "score") -> None:
        super().__init__()
        self.rows = rows
        self.index = index
        self.metric = metric

    def compose(self) -> ComposeResult:
        with Vertical():
            yield VerticalScroll(Static("", id="answers-input"), id="answers-head")
            with Horizontal(id="answers-cols"):
                for key in MODELS:
                    yield VerticalScroll(Static("", id=f"answer-{key}"), id=f"col-{key}", classes="answer")
            yield Static("highlighted: words that differ from the reference", id="answers-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        row = self.rows[self.index]
        head = Text()
        head.append(f"#{row.get('index', self.index)}  ({self.index + 1} of {len(self.rows)} shown)\n", style="bold")
        head.append("input\n", style="bold")
        head.append(row.get("input", "") + "\n\n")
        head.append("reference\n", style="bold")
        head.append(row.get("reference", ""))
        self.query_one("#answers-input", Static).update(head)
        for key in MODELS:
            title = ROLE_TITLES[key]
            out = row.get("outputs", {}).get(key) or {}
            right = is_right(row, key)
            column = self.query_one(f"#col-{key}")
            column.set_class(right, "right")
            column.set_class(not right, "wrong")
            column.border_title = f"{'✓' if right else '✗'} {title}  {self.metric} {out.get('score', 0):.2f}"
            column.border_subtitle = (f"{out.get('tokens', 0)} token{'' if out.get('tokens', 0) == 1 else 's'} · {out.get('seconds', 0):.2f}s"
                                      + (" · cut at max tokens" if out.get("finish_reason") == "length" else ""))
            text = out.get("text", "")
            body = marked(self.app, text, row.get("reference", "")) if text else Text("(empty answer)",
                                                                                       style="italic")
            self.query_one(f"#answer-{key}", Static).update(body)

    def action_step(self, delta: int) -> None:
        self.index = max(0, min(len(self.rows) - 1, self.index + delta))
        self.show()

    def action_close(self) -> None:
        self.dismiss(None)
