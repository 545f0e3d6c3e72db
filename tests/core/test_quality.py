import random
import string

from stillroom.core.config import ProjectConfig
from stillroom.core.quality import NearDupIndex, check_input, parse_json_answer, parse_label, similarity
from stillroom.core.tasks import task_kind


def test_parse_label():
    labels = ["billing", "shipping", "technical"]
    assert parse_label(" Billing.", labels) == "billing"
    assert parse_label("shipping - the parcel is late", labels) == "shipping"
    assert parse_label("I think this is technical", labels) == "technical"
    assert parse_label("maybe billing or shipping", labels) is None
    assert parse_label("weather", labels) is None


def test_parse_json_answer_allows_fences():
    assert parse_json_answer('```json\n{"a": 1}\n```') == {"a": 1}


def test_check_answer_by_task_type():
    config = ProjectConfig()
    config.task.labels = ["a", "b"]
    kind = task_kind(config.task)
    assert kind.check_answer("a") == (None, "a")
    assert kind.check_answer("zzz")[0] == "label-not-in-set"
    assert kind.check_answer("  ")[0] == "empty-answer"
    config.task.type = "extraction"
    config.task.json_schema = '{"type": "object", "required": ["name"]}'
    kind = task_kind(config.task)
    assert kind.check_answer('{"name": "x"}')[0] is None
    assert kind.check_answer('{"nom": "x"}')[0] == "schema-mismatch"
    assert kind.check_answer('{name')[0] == "invalid-json"


def test_check_input_rejects_loops_and_bounds():
    config = ProjectConfig()
    assert check_input("", config) == "empty"
    assert check_input("hi", config) == "too-short"
    assert check_input("x" * 700, config) == "too-long"
    assert check_input("the same thing " * 30, config) in ("repetitive", "too-long")
    assert check_input("please help " * 20, config) == "repetitive"
    assert check_input("My parcel has not arrived after two weeks.", config) is None


def test_near_dup_index_matches_brute_force():
    rng = random.Random(7)
    base = ["".join(rng.choice(string.ascii_lowercase + "    ") for _ in range(rng.randint(30, 90)))
            for _ in range(300)]
    texts = []
    for text in base:
        texts.append(text)
        if rng.random() < 0.5:     # a light edit of an earlier text: a near duplicate
            chars = list(rng.choice(texts))
            for _ in range(rng.randint(0, 6)):
                chars[rng.randrange(len(chars))] = rng.choice(string.ascii_lowercase)
            texts.append("".join(chars))
    index = NearDupIndex(threshold=0.7)
    seen = []
    disagreements = 0
    for text in texts:
        brute = max((similarity(text, old) for old in seen), default=0.0)
        found = index.nearest(text)
        if (brute >= 0.7) != (found is not None):
            disagreements += 1
        if found is not None:
            assert abs(found.score - brute) < 1e-9 or found.score <= brute
        index.add(text)
        seen.append(text)
    assert disagreements == 0
    assert sum(1 for t in texts if index.exact(t)) == len(texts)
