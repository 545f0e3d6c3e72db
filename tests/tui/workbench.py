"""Shared pieces of the workbench tests: generated rows, waiting on the app, the Task screen's readiness.
(Uniquely named: a module called conftest or helpers would clash with other folders'.)"""
from stillroom.core import records

MARKUP_TEXT = "Refund [bold red]now[/bold red] or see [link=https://example.com]x[/link] — ünïcødé 日本語"


def synthetic_rows(n: int = 30) -> list[dict]:
    """Deterministic generated rows: kept, rejected (with and without an answer), one with markup."""
    labels = ["billing", "shipping", "technical", "account"]
    system = "Route the support ticket to one team."
    rows = []
    for i in range(n):
        label = labels[i % 4]
        text = f"Ticket {i}: a question about {label} number {i * 7 % 13}"
        if i == 3:
            text = MARKUP_TEXT
        if i == 5:
            text = "A very long ticket " + "that goes on and on " * 40
        row = records.make_row(text, label, system, id=f"syn-{i:06d}", status="kept", reason="",
                               scores={"dup": round((i % 9) / 10, 2)},
                               meta={"teacher": "fake", "intended_label": label, "time": 1700000000 + i})
        if i % 6 == 4:
            row["status"], row["reason"] = "rejected", "label-disagree"
            row["meta"]["teacher_label"] = labels[(i + 1) % 4]
        if i % 10 == 9:
            row["status"], row["reason"] = "rejected", "near-dup"
            row["messages"] = row["messages"][:-1]
        rows.append(row)
    return rows


async def wait_for(pilot, condition, timeout: float = 20.0, step: float = 0.05):
    """Let the app run until `condition()` holds; fail after `timeout` seconds (a generous bound for a
    busy machine, never a measure of speed)."""
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(step)


def task_ready(app) -> bool:
    """The project is open and the Task screen has drawn its seeds."""
    if app.current_mode != "task" or type(app.screen).__name__ != "TaskScreen":
        return False
    tables = app.screen.query("#seeds")
    return bool(tables) and bool(tables.first().columns)


async def start_generation(pilot, app, target: int):
    """Open Generate on a freshly opened project, set the target and press Start; returns the screen."""
    from textual.widgets import Input
    await wait_for(pilot, lambda: task_ready(app))
    await pilot.press("2")
    screen = app.screen
    screen.query_one("#target", Input).value = str(target)
    await pilot.press("s")
    return screen


async def open_screen(pilot, app, key: str, screen: str):
    """Press `key` and wait until the screen (or dialog) class named `screen` is in front; returns it."""
    await pilot.press(key)
    await wait_for(pilot, lambda: type(app.screen).__name__ == screen)
    return app.screen
