"""Imports that infer what they can: labels of a placeholder task set from the answers, answers outside a
configured label set refused with their lines, the task kind guessed, and `stillroom init --from`."""
import json
from pathlib import Path

import pytest

from clitools import run_cli
from stillroom.core import records
from stillroom.core.errors import DataError
from stillroom.core.importing import create_from, guess_columns, import_into
from stillroom.core.project import Project
from stillroom.core.task_guess import PLACEHOLDER_LABELS, guess_kind, labels_from_answers
from stillroom.core.tasks import Classification

DATA = Path("/work/shared/data")


def write_csv(path: Path, rows, header=("text", "team")) -> Path:
    path.write_text(",".join(header) + "\n" + "".join(f"{t},{a}\n" for t, a in rows))
    return path


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".stillroom.lock"}


# ---------------------------------------------------------------- the rule

def test_placeholder_labels_are_a_new_projects_labels(tmp_path):
    assert list(PLACEHOLDER_LABELS) == Project.create(tmp_path / "p").config.task.labels


def test_labels_in_order_of_first_appearance():
    assert labels_from_answers(["shipping", "billing", "shipping", " account ", "billing"]) == \
        ["shipping", "billing", "account"]


@pytest.mark.parametrize("answers, kind", [
    (["positive", "negative"] * 5, "classification"),
    (['{"name": "Ann", "age": 3}', '```json\n{"name": "Bob"}\n```'], "extraction"),
    (["4", "Paris", "William Shakespeare", "1969"], "qa"),                   # short, each one different
    (["Dear team, " + "the parcel came late and I would like a refund please " * 3] * 2, "generation"),
    (["yes"] * 6, "qa"),                                                     # one answer is no label set
])
def test_guess_kind(answers, kind):
    assert guess_kind(answers).kind.name == kind


def test_guessed_extraction_schema_lists_keys_and_types():
    guess = guess_kind(['{"name": "Ann", "age": 3}', '{"name": "Bob", "age": 4.5, "vip": true}'])
    assert json.loads(guess.kind.json_schema) == {
        "type": "object", "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "number"}, "vip": {"type": "boolean"}}}


def test_out_of_set_report_names_lines_and_answers():
    kind = Classification(labels=("billing", "shipping"))
    placed = [("line 2", "billing"), ("line 4", "refund"), ("line 9", "Billing"), ("line 17", "refund")]
    assert kind.imported_answers_problem(placed, "tickets.csv") == (
        "tickets.csv: lines 4, 9, 17: answers not among the labels [billing, shipping]: 'refund', 'Billing'")
    assert kind.imported_answers_problem(placed[:1], "tickets.csv") is None


def test_places_text_is_short_for_many_lines():
    assert records.places_text(["line 3"]) == "line 3"
    assert records.places_text([f"line {n}" for n in range(1, 16)], limit=3) == "lines 1, 2, 3 and 12 more"
    assert records.places_text(["item 0", "item 4"]) == "items 0, 4"


# ---------------------------------------------------------------- import into a project

def test_import_into_placeholder_project_sets_labels_from_seeds_and_tests(tmp_path):
    project = Project.create(tmp_path / "p")
    seeds = write_csv(tmp_path / "s.csv", [("card charged twice", "billing"), ("where is it", "shipping"),
                                           ("refund please", "billing")])
    tests = write_csv(tmp_path / "t.csv", [("app crashes", "technical"), ("late parcel", "shipping")])
    result = import_into(project, seeds, input_column="text", output_column="team")
    assert result.notice == "labels set from the answers: billing, shipping"
    assert Project.open(project.root).config.task.labels == ["billing", "shipping"]
    # Labels are configured now: a test row with another answer is refused, and nothing is written.
    before = snapshot(project.root)
    with pytest.raises(DataError, match=r"t\.csv: line 2: answers not among the labels \[billing, shipping\]: "
                                        r"'technical'"):
        import_into(project, tests, to="test", input_column="text", output_column="team")
    assert snapshot(project.root) == before


@pytest.mark.parametrize("answers, labels", [
    (["billing", "shipping", "technical"], ["billing", "shipping", "technical"]),  # few rows: the type decides
    (["billing"], list(PLACEHOLDER_LABELS)),                                       # one answer: nothing to tell
])
def test_import_of_few_short_answers_into_placeholder_project(tmp_path, answers, labels):
    project = Project.create(tmp_path / "p")
    import_into(project, write_csv(tmp_path / "s.csv", [(f"ticket {i}", a) for i, a in enumerate(answers)]),
                input_column="text", output_column="team")
    task = Project.open(project.root).config.task
    assert (task.type, task.labels) == ("classification", labels)


def test_import_into_placeholder_project_with_free_answers_guesses_the_kind(tmp_path):
    project = Project.create(tmp_path / "p")
    source = tmp_path / "qa.jsonl"
    source.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in [
        ("Who wrote Hamlet?", "William Shakespeare wrote it around 1600, in London"),
        ("What is the boiling point of water?", "100 degrees Celsius at sea level")]))
    result = import_into(project, source)
    assert result.notice.startswith("task kind guessed: qa (")
    task = Project.open(project.root).config.task
    assert (task.type, task.labels, task.input_name) == ("qa", [], "Question")


def test_import_into_configured_project_keeps_its_task(tmp_path):
    project = Project.create(tmp_path / "p")
    project.config.task.labels = ["billing", "shipping"]
    project.save_config()
    result = import_into(project, write_csv(tmp_path / "s.csv", [("x", "shipping"), ("y", "billing")]),
                         input_column="text", output_column="team")
    assert (result.count, result.notice) == (2, "")
    assert Project.open(project.root).config.task.labels == ["billing", "shipping"]


def test_cli_import_refuses_answers_outside_the_labels(tmp_path):
    project = Project.create(tmp_path / "p")
    project.config.task.labels = ["billing", "shipping"]
    project.save_config()
    source = write_csv(tmp_path / "tickets.csv", [("a", "billing"), ("b", "refund"), ("c", "shipping"),
                                                  ("d", "Billing")])
    before = snapshot(project.root)
    result = run_cli("import", source, "--into", project.root, "--input-column", "text", "--output-column", "team")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"stillroom: error: {source}: lines 3, 5: answers not among the labels "
                                     f"[billing, shipping]: 'refund', 'Billing'")
    assert snapshot(project.root) == before


@pytest.mark.parametrize("header, columns", [
    ("input,output", {}),                                             # the importer's own defaults
    ("id,Question,notes,Answer", {"input_column": "Question", "output_column": "Answer"}),
    ("ticket,team", {"input_column": "ticket", "output_column": "team"}),   # two columns, in order
    ("a,b,c", {}),                                                    # nothing to go on
])
def test_guess_columns(tmp_path, header, columns):
    path = tmp_path / "rows.csv"
    path.write_text(header + "\n")
    assert guess_columns(path) == columns


# ---------------------------------------------------------------- init --from

def test_create_from_jsonl_with_columns_guesses_extraction(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"text": t, "fields": f}) + "\n" for t, f in [
        ("Ann, 3 years old", {"name": "Ann", "age": 3}), ("Bob, 40", {"name": "Bob", "age": 40})]))
    project, notice = create_from(tmp_path / "ex", source, input_column="text", output_column="fields")
    assert notice == "task kind guessed: extraction (all 2 answers are JSON objects)"
    assert project.config.task.type == "extraction"
    assert json.loads(project.config.task.json_schema)["required"] == ["name", "age"]
    assert records.answer_text(project.all_seeds()[0]) == '{"name": "Ann", "age": 3}'


def test_create_from_with_a_named_kind_checks_the_answers(tmp_path):
    source = write_csv(tmp_path / "s.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(DataError, match=r"s\.csv: lines 2, 3: The answer is not valid JSON"):
        create_from(tmp_path / "p", source, task_type="extraction", input_column="text", output_column="team")
    assert not (tmp_path / "p").exists()


def test_init_from_csv_with_tests_guesses_classification(tmp_path):
    seeds = DATA / "atis" / "seeds.csv"
    if not seeds.exists():
        pytest.skip("the shared ATIS subset is not here")
    result = run_cli("init", tmp_path / "atis", "--from", seeds, "--test", DATA / "atis" / "test.csv",
                     "--input-column", "text", "--output-column", "label")
    assert result.returncode == 0, result.stderr
    assert "task kind guessed: classification (8 distinct short answers in 288 rows); labels: flight, " \
           "airfare, ground_service, airport, airline, distance, abbreviation, capacity" in result.stdout
    assert "--task-type" in result.stdout                  # how to change it
    project = Project.open(tmp_path / "atis")
    assert len(project.all_seeds()) == 24 and len(project.tests()) == 264
    assert sorted(project.config.task.labels) == sorted(
        {records.answer_text(r) for r in project.all_seeds()})


def test_init_from_qa_csv(tmp_path):
    source = write_csv(tmp_path / "qa.csv", [("What is 2+2?", "4"), ("Capital of France?", "Paris"),
                                             ("Who wrote Hamlet?", "Shakespeare")], header=("q", "a"))
    result = run_cli("init", tmp_path / "qa", "--from", source, "--input-column", "q", "--output-column", "a")
    assert result.returncode == 0, result.stderr
    assert "task kind guessed: qa (" in result.stdout
    assert Project.open(tmp_path / "qa").config.task.type == "qa"


def test_the_cli_guesses_a_csvs_columns_and_says_so(tmp_path):
    source = write_csv(tmp_path / "reviews.csv", [("a fine film", "positive"), ("dull and long", "negative"),
                                                  ("loved it", "positive"), ("never again", "negative"),
                                                  ("a small wonder", "positive"), ("flat", "negative")],
                       header=("text", "label"))
    result = run_cli("init", tmp_path / "p", "--from", source)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "columns: text is the input, label the answer (guessed from the header" in said
    project = Project.open(tmp_path / "p")
    assert [records.user_text(r) for r in project.all_seeds()][:2] == ["a fine film", "dull and long"]
    assert sorted(project.config.task.labels) == ["negative", "positive"]
    more = write_csv(tmp_path / "more.csv", [("what a bore", "negative")], header=("sentence", "label"))
    result = run_cli("import", more, "--into", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    assert "columns: sentence is the input, label the answer" in " ".join(result.stdout.split())
    assert records.user_text(Project.open(tmp_path / "p").all_seeds()[-1]) == "what a bore"
    # nothing to go on: the columns found are named
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\nx,y,z\n")
    result = run_cli("import", odd, "--into", tmp_path / "p")
    assert result.returncode == 2 and "missing column(s) input, output; the header has a, b, c" in result.stderr


def test_init_from_with_a_missing_column_names_the_columns_found(tmp_path):
    source = write_csv(tmp_path / "tickets.csv", [("a", "billing"), ("b", "shipping")])
    result = run_cli("init", tmp_path / "p", "--from", source, "--input-column", "body", "--output-column", "team")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"stillroom: error: {source}:1: missing column(s) body; the header has "
                                     f"text, team (choose columns with --input-column / --output-column)")
    assert not (tmp_path / "p").exists()
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"text": "a", "label": "b"}) + "\n")
    result = run_cli("init", tmp_path / "p", "--from", jsonl, "--input-column", "text", "--output-column", "team")
    assert result.returncode == 2 and "the object has text, label" in result.stderr
    assert not (tmp_path / "p").exists()
