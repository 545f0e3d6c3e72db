import json

import pytest

from stillroom.core import records
from stillroom.core.errors import DataError


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


GOOD = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "billing"}]}


def test_reads_good_rows_with_bom_and_crlf(tmp_path):
    line = json.dumps(GOOD)
    path = write(tmp_path, "a.jsonl", ("\ufeff" + line + "\r\n" + line + "\r\n\r\n").encode("utf-8"))
    assert len(records.read_jsonl(path)) == 2


@pytest.mark.parametrize("content,expected", [
    ('{"messages": [', "a.jsonl:2: invalid JSON"),
    ('[1, 2]', "a.jsonl:2: expected a JSON object"),
    ('{"messages": "hi"}', "a.jsonl:2: \"messages\" must be a non-empty list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "a.jsonl:2: messages[0].role is 'robot'"),
    ('{"messages": [{"content": "x"}]}', "a.jsonl:2: messages[0] has no \"role\""),
    ('{"messages": [{"role": "user", "content": 5}]}', "a.jsonl:2: messages[0].content must be a string"),
    ('{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}',
     "a.jsonl:2: messages[0] (user) has empty content"),
    ('{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}',
     "a.jsonl:2: expected a user message first"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}',
     "a.jsonl:2: wrong role order"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "a.jsonl:2: the last message must be the assistant"),
    ('{"prompt": "x"}', "a.jsonl:2: missing \"messages\""),
])
def test_bad_lines_name_file_and_line(tmp_path, content, expected):
    path = write(tmp_path, "a.jsonl", json.dumps(GOOD) + "\n" + content + "\n")
    with pytest.raises(DataError) as info:
        records.read_jsonl(path)
    assert expected in str(info.value)
    assert str(info.value).startswith(str(path))


def test_non_utf8_and_binary(tmp_path):
    path = write(tmp_path, "a.jsonl", json.dumps(GOOD).encode() + b"\n\xff\xfe bad\n")
    with pytest.raises(DataError, match=r"a.jsonl:2: not UTF-8"):
        records.read_jsonl(path)
    path = write(tmp_path, "b.jsonl", b"\x00\x01\x02garbage")
    with pytest.raises(DataError, match=r"b.jsonl:1: binary data"):
        records.read_jsonl(path)


def test_huge_line_refused(tmp_path):
    row = {"messages": [{"role": "user", "content": "x" * (2 << 20)}, {"role": "assistant", "content": "y"}]}
    path = write(tmp_path, "a.jsonl", json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"a.jsonl:1: line is .* bytes"):
        records.read_jsonl(path)


def test_import_alpaca_json_list_and_jsonl(tmp_path):
    items = [{"instruction": "Classify", "input": "my card was charged twice", "output": "billing"},
             {"instruction": "Where is my parcel?", "output": "shipping"}]
    for path in (write(tmp_path, "a.json", json.dumps(items)),
                 write(tmp_path, "a.jsonl", "\n".join(json.dumps(i) for i in items))):
        rows = records.import_file(path, system="sys")
        assert records.user_text(rows[0]) == "Classify\n\nmy card was charged twice"
        assert records.answer_text(rows[1]) == "shipping"
        assert records.system_text(rows[0]) == "sys"


def test_import_alpaca_missing_output(tmp_path):
    path = write(tmp_path, "a.jsonl", json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(DataError, match=r"a.jsonl:1: Alpaca row is missing \"output\""):
        records.import_file(path)


def test_import_sharegpt(tmp_path):
    row = {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hello"},
                             {"from": "gpt", "value": "hi"}]}
    rows = records.import_file(write(tmp_path, "s.jsonl", json.dumps(row) + "\n"))
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    bad = {"conversations": [{"from": "alien", "value": "x"}]}
    with pytest.raises(DataError, match=r"s2.jsonl:1: conversations\[0\].from is 'alien'"):
        records.import_file(write(tmp_path, "s2.jsonl", json.dumps(bad) + "\n"))


def test_import_csv_with_column_mapping(tmp_path):
    path = write(tmp_path, "t.csv", 'ticket,team\n"Refund, please",billing\nWhere is it?,shipping\n')
    rows = records.import_file(path, input_column="ticket", output_column="team")
    assert records.user_text(rows[0]) == "Refund, please"
    with pytest.raises(DataError, match=r"t.csv:1: missing column\(s\) input, output"):
        records.import_file(path)


def test_import_csv_broken_quoting(tmp_path):
    path = write(tmp_path, "t.csv", 'input,output\n"unclosed,billing\nx,y\n')
    with pytest.raises(DataError, match=r"t.csv:\d+: (broken CSV|fewer fields|more fields)"):
        records.import_file(path)


def test_export_formats_round_trip(tmp_path):
    for fmt in ("openai", "alpaca", "sharegpt"):
        out = records.to_format(GOOD, fmt)
        path = write(tmp_path, f"{fmt}.jsonl", json.dumps(out) + "\n")
        back = records.import_file(path)[0]
        assert records.user_text(back) == "hi" and records.answer_text(back) == "billing"
        assert records.system_text(back) == "s"
