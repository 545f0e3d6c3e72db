"""stillroom chat PATH [--run RUN] [PROMPT]: one prompt, teacher and student answers streamed side by side."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

from stillroom.tui.commands.common import console, stop_on_ctrl_c

NAME = "chat"
HELP = ("ask the teacher and the tuned student the same prompt and stream both answers side by side "
        "(--base adds the untrained student)")


def add_arguments(parser) -> None:
    parser.add_argument("path", type=Path, help="project folder")
    parser.add_argument("prompt", nargs="*", help="the prompt (default: read from standard input)")
    parser.add_argument("--run", dest="run_id", default=None, metavar="RUN", help="run id (default: the latest run)")
    parser.add_argument("--base", action="store_true", help="also answer with the untrained base student")
    parser.add_argument("--max-tokens", type=int, default=None, help="longest answer (default: evaluation.max_tokens)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")


def requests_for(project, text: str, teacher, columns):
    """What each column is asked: the teacher as in generation (few-shot when it is a base model),
    the students as in training (system prompt + the input)."""
    from stillroom.core.backends.base import choose_mode
    from stillroom.core.evaluate import shot_pool, shots_for, student_messages
    from stillroom.core.prompts import Prompter, Request
    from stillroom.core.records import make_row
    task = project.config.task
    out = {}
    mode = choose_mode(teacher, project.config.teacher.mode)
    pool = shot_pool(project, project.tests())
    out["teacher"] = Prompter(task, mode).answer(shots_for(pool, project.config.generation.few_shot,
                                                           project.config.evaluation.seed, 0),
                                                 text, task.system_prompt)
    messages = tuple(student_messages(make_row(text, "-"), task.system_prompt))
    for column in columns:
        if column != "teacher":
            out[column] = Request("chat", messages=messages)
    return out


def run(args) -> int:
    from stillroom.core.backends import load_teacher
    from stillroom.core.backends.base import SamplingParams
    from stillroom.core.errors import StillroomError
    from stillroom.core.evaluate import load_students, run_weights
    from stillroom.core.project import Project
    from stillroom.core.prompts import ask

    project = Project.open(args.path)
    text = " ".join(args.prompt).strip()
    if not text:
        if sys.stdin.isatty():
            text = input("prompt> ").strip()
        else:
            text = sys.stdin.read().strip()
    if not text:
        raise StillroomError("empty prompt; pass one as an argument or on standard input")
    weights = run_weights(project, args.run_id)
    err = console(stderr=True)
    err.print(f"loading teacher {project.config.teacher.model} and student {weights.student_ref} "
              f"+ run {weights.run_id}…")
    teacher = load_teacher(project)
    base, tuned = load_students(project, weights)
    models = {"teacher": teacher, "tuned": tuned}
    if args.base:
        models["base"] = base
    params = SamplingParams(temperature=args.temperature,
                            max_tokens=args.max_tokens or max(64, project.config.evaluation.max_tokens))
    requests = requests_for(project, text, teacher, models)
    answers = {k: "" for k in models}
    done = {k: False for k in models}
    errors = {}
    lock = threading.Lock()
    try:
        with stop_on_ctrl_c() as cancel:
            def work(key):
                def on_token(piece):
                    with lock:
                        answers[key] += piece
                try:
                    completion = ask(models[key], requests[key], params, on_token=on_token, cancel=cancel)
                    with lock:
                        answers[key] = completion.text
                except StillroomError as exc:
                    errors[key] = exc.one_line()
                finally:
                    done[key] = True

            # The base student shares the tuned student's weights: those two take turns.
            order = [["teacher"], ["tuned"] + (["base"] if "base" in models else [])]
            threads = [threading.Thread(target=lambda keys=keys: [work(k) for k in keys], daemon=True)
                       for keys in order]
            for t in threads:
                t.start()
            show(answers, done, errors, threads, lock, text)
    finally:
        teacher.close()
        tuned.close()
        base.close()
    return 130 if cancel.is_set() else 0


def _table(answers, done, errors, lock, prompt):
    from rich.table import Table
    from rich.text import Text
    from stillroom.core.evaluate import TITLES
    table = Table(expand=True, title=Text(prompt), title_justify="left")
    with lock:
        for key in answers:
            table.add_column(TITLES[key] + ("" if done[key] else " …"), ratio=1)
        table.add_row(*[Text(errors.get(k) or answers[k], style="red" if k in errors else "") for k in answers])
    return table


def show(answers, done, errors, threads, lock, prompt) -> None:
    out = console()
    if out.is_terminal:
        from rich.live import Live
        with Live(_table(answers, done, errors, lock, prompt), console=out, refresh_per_second=12) as live:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.08)
                live.update(_table(answers, done, errors, lock, prompt))
            live.update(_table(answers, done, errors, lock, prompt))
    else:
        for t in threads:
            t.join()
        out.print(_table(answers, done, errors, lock, prompt))
