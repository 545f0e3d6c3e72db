import json
import time

import pytest

from stillroom.core import records
from stillroom.core.errors import StillroomError
from stillroom.core.project import Project
from stillroom.core.review import ReviewError, ReviewSet, parse_filter


def synthetic_rows(n, labels=("billing", "shipping")):
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        row = records.make_row(f"ticket {i} about {label} refund" if i % 3 == 0 else f"ticket {i} {label}",
                               label, id=f"syn-{i:06d}", status="kept", reason="",
                               scores={"dup": round((i % 10) / 10, 1)}, meta={})
        if i % 7 == 6:
            row["status"], row["reason"] = "rejected", "near-dup"
            row["messages"] = row["messages"][:-1]
        rows.append(row)
    return rows


def test_filters():
    rs = ReviewSet(synthetic_rows(40))
    assert len(rs.filter("")) == 40
    kept = rs.filter("status:kept")
    assert all(rs.entries[i].status == "kept" for i in kept) and len(kept) == 40 - 5
    assert all(rs.entries[i].label == "billing" for i in rs.filter("label:billing status:kept"))
    assert len(rs.filter("reason:near-dup")) == 5
    assert all(rs.entries[i].dup >= 0.8 for i in rs.filter("dup>=0.8"))
    assert all("refund" in rs.entries[i].text for i in rs.filter('"about billing refund"'))
    assert rs.filter("REFUND") == rs.filter("refund")
    with pytest.raises(StillroomError):
        parse_filter('"open')
    with pytest.raises(StillroomError):
        parse_filter("status:gone")


def test_actions_undo_and_atomic_save(tmp_path):
    project = Project.create(tmp_path / "p", "classification")
    project.save_synthetic(synthetic_rows(20))
    rs = ReviewSet.load(project)
    assert rs.prune([0, 1, 6]) == 2        # 6 is a reject: nothing to prune
    assert rs.dirty and rs.save() and not rs.dirty
    on_disk = {r["id"]: r["status"] for r in project.synthetic()}
    assert on_disk["syn-000000"] == "pruned" and on_disk["syn-000002"] == "kept"
    assert rs.undo() == "prune of 2 row(s)"
    rs.save()
    assert all(r["status"] != "pruned" for r in project.synthetic())
    with pytest.raises(ReviewError):
        rs.keep([6])                       # rejected before answering
    messages = [{"role": "user", "content": "fixed text"}, {"role": "assistant", "content": "billing"}]
    rs.edit(6, messages)
    assert rs.entries[6].status == "kept" and rs.entries[6].row["meta"]["edited"]
    assert rs.restore([6]) == 1 and rs.entries[6].status == "rejected"
    assert rs.entries[6].reason == "near-dup"
    rs.save()
    assert len(project.synthetic()) == 20


def test_older_snapshot_never_overwrites_newer(tmp_path):
    project = Project.create(tmp_path / "p", "classification")
    project.save_synthetic(synthetic_rows(5))
    rs = ReviewSet.load(project)
    rs.prune([0])
    old = rs.snapshot()
    rs.prune([1])
    assert rs.write(rs.snapshot())
    assert not rs.write(old)
    statuses = [r["status"] for r in project.synthetic()]
    assert statuses[:2] == ["pruned", "pruned"]


def test_add_ignores_known_ids():
    rows = synthetic_rows(3)
    rs = ReviewSet(rows)
    assert not rs.add(rows[0])
    assert rs.add(dict(rows[0], id="syn-000099"))
    assert len(rs) == 4


def test_filter_50k_rows_is_fast():
    rs = ReviewSet(synthetic_rows(50_000))
    start = time.perf_counter()
    shown = rs.filter('status:kept label:billing "refund"')
    rs.prune(shown)
    elapsed = time.perf_counter() - start
    assert shown and elapsed < 2.0
