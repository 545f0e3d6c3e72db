"""Example rows in the OpenAI chat format: reading, validating, importing and exporting.

A row is a dict: {"messages": [{"role": ..., "content": ...}, ...]} plus, for generated rows,
"id", "status" (kept | pruned | rejected), "reason", "scores" and "meta".
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

from .errors import DataError
from .fsio import atomic_write_text

ROLES = ("system", "user", "assistant")
STATUSES = ("kept", "pruned", "rejected")
MAX_LINE_BYTES = 1 << 20   # a single example larger than 1 MiB is certainly a mistake


# ---------------------------------------------------------------- validation

def check_messages(messages, where: str) -> list:
    """Validate a messages list; raise DataError naming `where` (file:line) and the problem."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: \"messages\" must be a non-empty list of {{role, content}} objects")
    roles = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: messages[{i}] must be an object with role and content, "
                            f"got {type(message).__name__}")
        role = message.get("role")
        if role is None:
            raise DataError(f"{where}: messages[{i}] has no \"role\"")
        if role not in ROLES:
            raise DataError(f"{where}: messages[{i}].role is {role!r}; expected system, user or assistant")
        content = message.get("content")
        if not isinstance(content, str):
            raise DataError(f"{where}: messages[{i}].content must be a string, got "
                            f"{type(content).__name__}")
        if not content.strip():
            raise DataError(f"{where}: messages[{i}] ({role}) has empty content")
        extra = set(message) - {"role", "content"}
        if extra:
            raise DataError(f"{where}: messages[{i}] has unexpected key(s) {', '.join(sorted(extra))}")
        roles.append(role)
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body:
        raise DataError(f"{where}: a system message may only come first")
    if not body or body[0] != "user":
        raise DataError(f"{where}: expected a user message first (after an optional system message)")
    for i, role in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise DataError(f"{where}: wrong role order: message {i + (len(roles) - len(body))} is "
                            f"{role}, expected {expected} (user and assistant must alternate)")
    if body[-1] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's answer")
    return messages


def _check_shape(messages, where: str) -> None:
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
            for m in messages):
        raise DataError(f"{where}: \"messages\" must be a list of {{role, content}} objects")


def check_row(row, where: str, *, generated: bool = False) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object with \"messages\", got {type(row).__name__}")
    if "messages" not in row:
        raise DataError(f"{where}: missing \"messages\"")
    if row.get("status") == "rejected":
        _check_shape(row["messages"], where)    # a reject may lack an answer; it is kept to be seen
    else:
        check_messages(row["messages"], where)
    if "id" in row and not isinstance(row["id"], str):
        raise DataError(f"{where}: \"id\" must be a string")
    if generated or "status" in row:
        status = row.get("status")
        if status not in STATUSES:
            raise DataError(f"{where}: \"status\" is {status!r}; expected kept, pruned or rejected")
    return row


# ---------------------------------------------------------------- accessors

def user_text(row: dict) -> str:
    """The last user message: the input the model answers."""
    for message in reversed(row["messages"]):
        if message["role"] == "user":
            return message["content"]
    return ""


def answer_text(row: dict) -> str:
    """The last assistant message: the reference answer."""
    for message in reversed(row["messages"]):
        if message["role"] == "assistant":
            return message["content"]
    return ""


def system_text(row: dict) -> str:
    first = row["messages"][0]
    return first["content"] if first["role"] == "system" else ""


def make_row(user: str, assistant: str, system: str = "", **extra) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages, **extra}


def prompt_messages(row: dict) -> list:
    """The messages up to (not including) the final answer."""
    return row["messages"][:-1]


def one_line(text, width: int | None = None) -> str:
    """`text` with every run of whitespace made one space, cut to `width` characters with "…"."""
    flat = " ".join(str(text).split())
    return flat if width is None or len(flat) <= width else flat[:width - 1] + "…"


def synthetic_id(index: int) -> str:
    """The id of the generated row written for candidate `index`: syn-000042."""
    return f"syn-{index:06d}"


def synthetic_index(row: dict) -> int | None:
    """The candidate index a generated row's id carries (synthetic_id's inverse); None for other ids."""
    rid = str(row.get("id", ""))
    return int(rid[4:]) if rid.startswith("syn-") and rid[4:].isdigit() else None


# ---------------------------------------------------------------- reading JSONL

def _decode_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSONL file") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]       # a BOM from some editors: harmless, skip it
    if b"\x00" in data[:4096]:
        raise DataError(f"{path}:1: binary data, expected UTF-8 JSON lines")
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            raise DataError(f"{path}:{number}: line is {len(raw):,} bytes; an example may be at most "
                            f"{MAX_LINE_BYTES:,} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{number}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
        yield number, text


def read_jsonl(path: Path, *, generated: bool = False, missing_ok: bool = False) -> list[dict]:
    """Every row of a JSONL file, validated. Raises DataError 'file:line: problem' on the first bad line."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    rows = []
    for number, text in _decode_lines(path):
        where = f"{path}:{number}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        rows.append(check_row(row, where, generated=generated))
    return rows


# ---------------------------------------------------------------- importers

def _from_alpaca(obj: dict, where: str, system: str) -> dict:
    for key in ("instruction", "output"):
        if key not in obj:
            raise DataError(f"{where}: Alpaca row is missing \"{key}\"")
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: Alpaca \"{key}\" must be a string")
    extra = obj.get("input") or ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: Alpaca \"input\" must be a string")
    user = obj["instruction"] + ("\n\n" + extra if extra.strip() else "")
    return make_row(user, obj["output"], obj.get("system") or system)


_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "model": "assistant", "bot": "assistant"}


def _from_sharegpt(obj: dict, where: str, system: str) -> dict:
    turns = obj.get("conversations")
    if not isinstance(turns, list):
        raise DataError(f"{where}: ShareGPT row needs a \"conversations\" list")
    messages = [{"role": "system", "content": system}] if system else []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"{where}: conversations[{i}] needs \"from\" and \"value\"")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise DataError(f"{where}: conversations[{i}].from is {turn['from']!r}; expected human, gpt "
                            f"or system")
        if role == "system" and messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": turn["value"]}
            continue
        messages.append({"role": role, "content": turn["value"]})
    return {"messages": messages}


def detect_format(obj: dict) -> str:
    if "messages" in obj:
        return "openai"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj:
        return "alpaca"
    return "unknown"


def import_file(path: Path, *, fmt: str = "auto", input_column: str = "input",
                output_column: str = "output", system_column: str = "", system: str = "") -> list[dict]:
    """Read an OpenAI-messages JSONL, Alpaca (JSON or JSONL), ShareGPT or CSV file into messages rows."""
    return [row for _, row in import_placed(path, fmt=fmt, input_column=input_column,
                                            output_column=output_column, system_column=system_column,
                                            system=system)]


def import_placed(path: Path, *, fmt: str = "auto", input_column: str = "input",
                  output_column: str = "output", system_column: str = "", system: str = ""
                  ) -> list[tuple[str, dict]]:
    """import_file's rows, each with its place in the file ("line 4"; "item 3" in a JSON list), so a
    problem found later can name the lines. JSON objects in none of the known formats are read through
    the named columns (input_column, output_column) when they have them."""
    path = Path(path)
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() in (".csv", ".tsv") else "auto"
    if fmt == "csv":
        return _import_csv(path, input_column, output_column, system_column, system)
    rows = []
    for where, place, obj in _json_objects(path):
        kind = detect_format(obj) if fmt == "auto" else fmt
        if kind == "unknown" and input_column in obj and output_column in obj:
            kind = "columns"
        if kind == "openai":
            row = {"messages": obj.get("messages")}
            check_row(row, where)
        elif kind == "alpaca":
            row = _from_alpaca(obj, where, system)
        elif kind == "sharegpt":
            row = _from_sharegpt(obj, where, system)
        elif kind == "columns":
            row = make_row(_cell(obj[input_column]), _cell(obj[output_column]),
                           _cell(obj.get(system_column, "")) if system_column else system)
        else:
            raise DataError(f"{where}: cannot tell the format: expected \"messages\" (OpenAI), "
                            f"\"instruction\"/\"output\" (Alpaca), \"conversations\" (ShareGPT) or the "
                            f"keys {input_column}, {output_column}; the object has "
                            f"{', '.join(obj) or 'no keys'} (choose keys with --input-column / --output-column)")
        rows.append((place, check_row(row, where)))
    if not rows:
        raise DataError(f"{path}: no examples found")
    return rows


def _cell(value) -> str:
    """A JSON value as message text: strings as they are, anything else (numbers, objects) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def places_text(places: list[str], limit: int = 12) -> str:
    """Places as one phrase: ["line 4", "line 9"] -> "lines 4, 9"; more than `limit` end in "and N more"."""
    units = {p.split(" ", 1)[0] for p in places}
    unit = units.pop() if len(units) == 1 else ""
    shown = [p.split(" ", 1)[1] if unit else p for p in places[:limit]]
    text = (f"{unit}s " if unit and len(places) > 1 else f"{unit} " if unit else "") + ", ".join(shown)
    return text + (f" and {len(places) - limit} more" if len(places) > limit else "")


def _json_objects(path: Path) -> Iterator[tuple[str, str, dict]]:
    """(where, place, object) for each object of a JSONL file, or of a JSON file holding a list (Alpaca's
    usual shape)."""
    lines = list(_decode_lines(path))
    if lines and lines[0][1].lstrip().startswith("["):
        text = "\n".join(t for _, t in lines)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        for i, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise DataError(f"{path}: item {i} is not an object")
            yield f"{path}: item {i}", f"item {i}", obj
        return
    for number, text in lines:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        yield f"{path}:{number}", f"line {number}", obj


def _csv_reader(path: Path) -> tuple[csv.DictReader, list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise DataError(f"{path}:1: broken CSV header: {exc}") from None
    return reader, list(header)


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV (or TSV) file."""
    return _csv_reader(Path(path))[1]


def _import_csv(path: Path, input_column: str, output_column: str, system_column: str,
                system: str) -> list[tuple[str, dict]]:
    reader, header = _csv_reader(path)
    needed = [c for c in (input_column, output_column, system_column) if c]
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; the header has "
                        f"{', '.join(header) or 'nothing'} (choose columns with --input-column / "
                        f"--output-column)")
    rows = []
    try:
        for record in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if None in record:
                raise DataError(f"{where}: more fields than the header has")
            values = {c: record.get(c) for c in needed}
            if any(v is None for v in values.values()):
                raise DataError(f"{where}: fewer fields than the header has")
            row = make_row(values[input_column], values[output_column],
                           (values.get(system_column) if system_column else "") or system)
            rows.append((f"line {line}", check_row(row, where)))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: broken CSV: {exc}") from None
    if not rows:
        raise DataError(f"{path}: no examples found")
    return rows


# ---------------------------------------------------------------- exporters

def to_format(row: dict, fmt: str) -> dict:
    if fmt == "openai":
        return {"messages": row["messages"]}
    if fmt == "alpaca":
        out = {"instruction": user_text(row), "input": "", "output": answer_text(row)}
        if system_text(row):
            out["system"] = system_text(row)
        return out
    if fmt == "sharegpt":
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": names[m["role"]], "value": m["content"]}
                                  for m in row["messages"]]}
    raise DataError(f"unknown format {fmt!r}; expected openai, alpaca or sharegpt")


def write_rows(path: Path, rows: list[dict], fmt: str = "openai") -> int:
    """Write rows as JSONL in `fmt` (openai, alpaca or sharegpt), atomically; returns how many."""
    lines = [json.dumps(to_format(r, fmt), ensure_ascii=False) + "\n" for r in rows]
    atomic_write_text(Path(path), "".join(lines))
    return len(lines)
