"""stillroom chat PATH [--run RUN] [PROMPT]: one prompt, teacher and student answers streamed side by side."""
from __future__ import annotations

import sys
import threading

from stillroom.tui.commands.common import add_project_and_run, console, stop_on_ctrl_c

NAME = "chat"
HELP = ("ask the teacher and the tuned student the same prompt and stream both answers side by side "
        "(--base adds the untrained student)")


def add_arguments(parser) -> None:
    add_project_and_run(parser)
    parser.add_argument("prompt", nargs="*", help="the prompt (default: read from standard input)")
    parser.add_argument("--base", action="store_true", help="also answer with the untrained base student")
    parser.add_argument("--max-tokens", type=int, default=None, help="longest answer (default: evaluation.max_tokens)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy)")


def conversation_for(project, text: str):
    """One exchange, asked as the Chat screen asks it: the teacher with few-shot seeds when it is a
    base model, the students as in training (the system prompt and the input)."""
    import random
    from stillroom.core.chat import Conversation
    from stillroom.core.errors import StillroomError
    from stillroom.core.evaluate import shot_pool
    config = project.config
    try:
        pool = shot_pool(project, project.tests())
    except StillroomError:
        pool = []
    shots = random.Random(config.generation.seed).sample(pool, min(config.generation.few_shot, len(pool)))
    conversation = Conversation(config.task, shots)
    conversation.ask(text)
    return conversation


def run(args) -> int:
    import dataclasses
    from stillroom.core.backends.base import SamplingParams
    from stillroom.core.errors import StillroomError
    from stillroom.core.evaluate import run_weights
    from stillroom.core.job_kinds import chat_job
    from stillroom.core.project import Project

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
    columns = ["teacher", "tuned"] + (["base"] if args.base else [])
    params = SamplingParams(temperature=args.temperature,
                            max_tokens=args.max_tokens or max(64, project.config.evaluation.max_tokens))
    request = {"conversation": conversation_for(project, text).to_json(), "params": dataclasses.asdict(params)}
    # The teacher and the students answer in two jobs (child processes, see core.jobs); the tuned and
    # base students share one and take turns.
    jobs = {"teacher": chat_job(project.root, "teacher"),
            "students": chat_job(project.root, "students", run_id=weights.run_id)}
    answers = {k: "" for k in columns}
    done = {k: False for k in columns}
    errors = {}
    lock = threading.Lock()

    def work(job, keys):
        for key in keys:
            def on_event(event, key=key):
                if isinstance(event, TokenStreamed):
                    with lock:
                        answers[key] += event.text
            try:
                result = job.call({**request, "column": key}, on_event)
                with lock:
                    answers[key] = result["text"]
            except StillroomError as exc:
                errors[key] = exc.one_line()
            finally:
                done[key] = True

    from stillroom.core.events import TokenStreamed
    try:
        with stop_on_ctrl_c(lambda: [job.stop() for job in jobs.values()]) as cancel:
            threads = [threading.Thread(target=work, args=(jobs["teacher"], ["teacher"]), daemon=True),
                       threading.Thread(target=work, args=(jobs["students"], columns[1:]), daemon=True)]
            for t in threads:
                t.start()
            show(answers, done, errors, threads, lock, text)
    finally:
        for job in jobs.values():
            job.close()
    if errors:
        return 1
    return 130 if cancel.is_set() else 0


def _table(answers, done, errors, lock, prompt):
    from rich.table import Table
    from rich.text import Text
    from stillroom.core.models import ROLE_TITLES
    table = Table(expand=True, title=Text(prompt), title_justify="left")
    with lock:
        for key in answers:
            table.add_column(ROLE_TITLES[key] + ("" if done[key] else " …"), ratio=1)
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
