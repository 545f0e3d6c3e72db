"""The Ollama Modelfile: the chat template rebuilt in Ollama's Go-template syntax (from the literal text
it puts around each role), the stop strings, and a parser that reads a Modelfile back."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from ..fsio import atomic_write_text
from .files import ExportError

_SENTINELS = {"system": "SYSTEMSENTINELXQ", "user": "USERSENTINELXQ", "assistant": "ASSISTANTSENTINELXQ"}


def chat_wrappers(tokenizer) -> Optional[dict]:
    """The literal text a chat template puts around each role's content, found by rendering marker
    messages; None when the template does not wrap roles independently (e.g. it folds the system
    prompt into the first user turn)."""
    def render(messages, gen):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    S, U, A = _SENTINELS["system"], _SENTINELS["user"], _SENTINELS["assistant"]
    try:
        full = render([{"role": "system", "content": S}, {"role": "user", "content": U + "1"},
                       {"role": "assistant", "content": A + "1"}, {"role": "user", "content": U + "2"}], True)
        user_only = render([{"role": "system", "content": S}, {"role": "user", "content": U + "1"}], False)
        with_answer = render([{"role": "system", "content": S}, {"role": "user", "content": U + "1"},
                              {"role": "assistant", "content": A + "1"}], False)
    except Exception:
        return None
    try:
        i_s, i_u1 = full.index(S), full.index(U + "1")
        i_a1, i_u2 = full.index(A + "1"), full.index(U + "2")
    except ValueError:
        return None
    if not i_s < i_u1 < i_a1 < i_u2:
        return None
    user_suf = user_only[user_only.index(U + "1") + len(U) + 1:]
    asst_suf = with_answer[with_answer.index(A + "1") + len(A) + 1:]
    between_ua = full[i_u1 + len(U) + 1:i_a1]
    between_au = full[i_a1 + len(A) + 1:i_u2]
    between_su = full[i_s + len(S):i_u1]
    tail = full[i_u2 + len(U) + 1:]
    if not (between_ua.startswith(user_suf) and between_au.startswith(asst_suf) and tail.startswith(user_suf)):
        return None
    user_pre = between_au[len(asst_suf):]
    if not between_su.endswith(user_pre):
        return None
    head = full[:i_s]
    user_pre = between_au[len(asst_suf):]
    bos = tokenizer.bos_token or ""
    # A BOS that only opens the text is added by llama.cpp itself; one that also opens every turn
    # (ChatML models whose BOS is <|im_start|>) is part of the template.
    strip_bos = bool(bos) and not user_pre.startswith(bos)
    if strip_bos and head.startswith(bos):
        head = head[len(bos):]
    wrappers = {"system_prefix": head, "system_suffix": between_su[:len(between_su) - len(user_pre)],
                "user_prefix": user_pre, "user_suffix": user_suf,
                "assistant_prefix": between_ua[len(user_suf):], "assistant_suffix": asst_suf,
                "generation_prompt": tail[len(user_suf):]}
    # The wrappers must reproduce the template on another conversation, or they are not trusted.
    probe = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Route this."}]
    expected = render(probe, True)
    if strip_bos and expected.startswith(bos):
        expected = expected[len(bos):]
    if render_with_wrappers(wrappers, probe) != expected:
        return None
    return wrappers


def render_with_wrappers(wrappers: dict, messages: list[dict], add_generation_prompt: bool = True) -> str:
    out = []
    for m in messages:
        out.append(wrappers[f"{m['role']}_prefix"] + m["content"] + wrappers[f"{m['role']}_suffix"])
    if add_generation_prompt:
        out.append(wrappers["generation_prompt"])
    return "".join(out)


def go_template(wrappers: dict) -> str:
    """Ollama's Go-template form of the wrappers (no whitespace-trimming markers: text stays exact)."""
    def lit(text: str) -> str:
        return text.replace("{{", '{{ "{{" }}')
    return ("{{ range .Messages }}"
            + f'{{{{ if eq .Role "system" }}}}{lit(wrappers["system_prefix"])}{{{{ .Content }}}}'
              f'{lit(wrappers["system_suffix"])}'
            + f'{{{{ else if eq .Role "user" }}}}{lit(wrappers["user_prefix"])}{{{{ .Content }}}}'
              f'{lit(wrappers["user_suffix"])}'
            + f'{{{{ else if eq .Role "assistant" }}}}{lit(wrappers["assistant_prefix"])}{{{{ .Content }}}}'
              f'{lit(wrappers["assistant_suffix"])}'
            + "{{ end }}{{ end }}" + lit(wrappers["generation_prompt"]))


def stop_strings(tokenizer, wrappers: Optional[dict]) -> list[str]:
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    added = [t.content if hasattr(t, "content") else str(t)
             for t in getattr(tokenizer, "added_tokens_decoder", {}).values()]
    candidates = list(dict.fromkeys(specials + added))
    stops = []
    if wrappers:
        for part in (wrappers["assistant_suffix"], wrappers["user_prefix"]):
            for token in candidates:
                if token and token in part and token not in stops:
                    stops.append(token)
    template = getattr(tokenizer, "chat_template", "") or ""
    from ..backends.hf import END_OF_TURN
    for marker in END_OF_TURN:
        if marker in template and marker not in stops:
            stops.append(marker)
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    return stops


def _quote(text: str) -> str:
    if '"""' in text:
        raise ExportError('a chat template or system prompt containing """ cannot be written to a Modelfile')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, tokenizer, system_prompt: str = "", temperature: float = 0.0) -> str:
    wrappers = chat_wrappers(tokenizer)
    lines = ["# Ollama Modelfile written by Stillroom. Create the model with:",
             "#   ollama create my-student -f Modelfile", f"FROM ./{gguf_name}"]
    if wrappers is not None:
        lines.append(f"TEMPLATE {_quote(go_template(wrappers))}")
    else:
        lines.append("# The chat template could not be expressed in Ollama's syntax; Ollama will use the "
                     "template stored in the GGUF.")
    if system_prompt:
        lines.append(f"SYSTEM {_quote(system_prompt)}")
    for stop in stop_strings(tokenizer, wrappers):
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    lines.append(f"PARAMETER temperature {temperature:g}")
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict:
    """FROM, TEMPLATE, SYSTEM and PARAMETERs of a Modelfile (triple-quoted values may span lines)."""
    out: dict = {"parameters": []}
    pos = 0
    pattern = re.compile(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER|ADAPTER|LICENSE|MESSAGE)\s+', re.M | re.I)
    while True:
        match = pattern.search(text, pos)
        if not match:
            break
        key = match.group(1).upper()
        rest = text[match.end():]
        if rest.startswith('"""'):
            end = rest.index('"""', 3)
            value, pos = rest[3:end], match.end() + end + 3
        else:
            line = rest.split("\n", 1)[0]
            value, pos = line.strip(), match.end() + len(line)
        if key == "PARAMETER":
            name, _, raw = value.partition(" ")
            raw = raw.strip()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
            out["parameters"].append((name, parsed))
        else:
            out[key.lower()] = value
    return out


def write_modelfile(folder: Path, gguf_name: str, tokenizer, system_prompt: str = "") -> Path:
    path = folder / "Modelfile"
    atomic_write_text(path, modelfile_text(gguf_name, tokenizer, system_prompt))
    return path
