"""generation.disagreement: a candidate whose teacher label differs from the label it was written for."""
from collections import Counter

from fakes import FakeTeacher
from stillroom.core import records
from stillroom.core.generate import generate
from stillroom.core.project import Project


def make_project(tmp_path, disagreement: str):
    project = Project.create(tmp_path / "proj", "classification")
    project.config.task.labels = ["billing", "shipping"]
    project.config.task.input_name, project.config.task.output_name = "Ticket", "Team"
    project.config.evaluation.test_fraction = 0.0
    project.config.generation.disagreement = disagreement
    project.save_config()
    project.save_seeds([records.make_row(f"seed number {i} is a question about {label} things", label)
                        for i, label in enumerate(["billing", "shipping"] * 3)])
    return Project.open(project.root)


class LeansBilling(FakeTeacher):
    """Every other shipping input is labelled billing."""
    answers = 0

    def complete(self, prompt, params, on_token=None, cancel=None):
        done = super().complete(prompt, params, on_token, cancel)
        if done.text.strip() == "shipping":
            self.answers += 1
            if self.answers % 2:
                done.text = " billing"
        return done


def kept_labels(project):
    return Counter(records.answer_text(r) for r in project.synthetic() if r["status"] == "kept")


def test_relabel_keeps_the_row_with_the_teachers_label(tmp_path):
    project = make_project(tmp_path, "relabel")
    assert generate(project, 12, teacher=FakeTeacher(disagree_every=4)).kept == 12
    rows = project.synthetic()
    relabelled = [r for r in rows if r["meta"].get("relabelled")]
    assert relabelled, "the fake teacher disagrees every 4th call"
    for row in relabelled:
        assert row["status"] == "kept"
        assert records.answer_text(row) == row["meta"]["teacher_label"] != row["meta"]["intended_label"]
    agreed = [r for r in rows if r["status"] == "kept" and not r["meta"].get("relabelled")]
    assert all(records.answer_text(r) == r["meta"]["intended_label"] for r in agreed)


def test_relabel_keeps_the_labels_balanced(tmp_path):
    """A relabelled row counts under the teacher's label, so the next candidates are written for the
    other one; a relabel into a label already ahead is rejected, so a teacher that leans to one label
    cannot tilt the set."""
    project = make_project(tmp_path, "relabel")
    generate(project, 16, teacher=LeansBilling())
    rows = project.synthetic()
    kept = kept_labels(project)
    assert sum(kept.values()) == 16 and abs(kept["billing"] - kept["shipping"]) <= 1, kept
    assert any(r["meta"].get("relabelled") for r in rows)
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert rejected and all(r["reason"] == "label-disagree" and r["meta"]["teacher_label"] == "billing"
                            for r in rejected)
    intended = Counter(r["meta"]["intended_label"] for r in rows)
    assert intended["shipping"] > intended["billing"], intended


def test_relabel_needs_fewer_candidates_than_reject(tmp_path):
    counts = {}
    for mode in ("reject", "relabel"):
        project = make_project(tmp_path / mode, mode)
        generate(project, 16, teacher=LeansBilling())
        assert sum(kept_labels(project).values()) == 16
        counts[mode] = len(project.synthetic())
    assert counts["relabel"] < counts["reject"], counts


def test_reject_drops_a_disagreeing_candidate(tmp_path):
    project = make_project(tmp_path, "reject")
    result = generate(project, 8, teacher=FakeTeacher(disagree_every=4))
    rows = project.synthetic()
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert result.kept == 8 and rejected and all(r["reason"] == "label-disagree" for r in rejected)
    assert not any(r["meta"].get("relabelled") for r in rows)
