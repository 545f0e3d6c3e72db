
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
    rows = synthetic_rows(40)
    rs = ReviewSet(rows)
    assert len(rs.filter("")) == 40
    rejected = [6, 13, 20, 27, 34]                       # i % 7 == 6
    kept = rs.filter("status:kept")
    assert kept == [i for i in range(40) if i not in rejected]
    assert all(rs.entries[i].status == "kept" for i in kept)
    billing = rs.filter("label:billing status:kept")
    assert billing == [i for i in range(0, 40, 2) if i not in rejected]
    assert billing and all(rs.entries[i].label == "billing" for i in billing)
    assert rs.filter("reason:near-dup") == rejected
    high_dup = rs.filter("dup>=0.8")
    assert high_dup == [8, 9, 18, 19, 28, 29, 38, 39]
    assert all(rs.entries[i].dup >= 0.8 for i in high_dup)
    phrase = rs.filter('"about billing refund"')
    assert phrase == [0, 6, 12, 18, 24, 30, 36]         # i % 6 == 0, rejected rows included
    assert all("about billing refund" in rs.entries[i].text for i in phrase)
    assert rs.filter("REFUND") == rs.filter("refund") and rs.filter("refund")
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


def test_filter_and_prune_over_50k_rows():
    # how fast is bench/review.py's business; this checks what comes out at that size
    rows = synthetic_rows(50_000)
    rs = ReviewSet(rows)
    shown = rs.filter('status:kept label:billing "refund"')
    expected = [i for i in range(0, 50_000, 6) if i % 7 != 6]     # billing (even) refund (i % 3 == 0), kept
    assert shown == expected
    assert rs.prune(shown) == len(expected)
    assert rs.filter("status:pruned") == expected
    assert len(rs.filter("status:kept")) == 50_000 - len(expected) - len(rs.filter("status:rejected"))


def test_filter_by_improve_round_and_group():
    from stillroom.core.review import ReviewSet, parse_filter
    rows = []
    for i, improve in enumerate([None, {"round": 1, "group": "billing->shipping"},
                                 {"round": 2, "group": "billing->shipping"}, {"round": 2, "group": "a->b"}]):
        row = {"id": f"syn-{i:06d}", "status": "kept", "reason": "", "scores": {}, "meta": {},
               "messages": [{"role": "user", "content": f"text {i}"}, {"role": "assistant", "content": "billing"}]}
        if improve:
            row["meta"]["improve"] = improve
        rows.append(row)
    review = ReviewSet(rows)
    assert review.filter("round:2") == [2, 3]
    assert review.filter("round:1,2 group:billing->shipping") == [1, 2]
    assert review.filter("group:a->b") == [3]
    with pytest.raises(StillroomError, match="'x' is not a round number"):
        parse_filter("round:x")
