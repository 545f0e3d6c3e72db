"""What Stillroom trusts and what it does not: templates, weights, remote code, paths."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE = [p for folder in ("core", "tui", "themes") for p in (REPO / folder).rglob("*.py")]
EVIL = "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def test_llama_cpp_chat_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    formatter = Jinja2ChatFormatter(template=EVIL, eos_token="</s>", bos_token="<s>")
    with pytest.raises(SecurityError):
        formatter(messages=[{"role": "user", "content": "hi"}])


def test_llama_cpp_model_uses_the_gguf_template_through_that_formatter():
    from stillroom.core.backends.llamacpp import LlamaCppModel
    from stillroom.core.models import bundled_path
    model = LlamaCppModel(bundled_path("smollm2-135m-instruct"), n_ctx=256)
    try:
        assert model.supports_chat
        llm = model.llm
        # The GGUF's own template, registered by llama-cpp-python through Jinja2ChatFormatter (sandboxed).
        assert llm.chat_handler is None and llm.chat_format == "chat_template.default"
        assert "chat_template.default" in llm._chat_handlers
    finally:
        model.close()


def test_transformers_chat_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "hi": 1}, "<unk>")),
                                  unk_token="<unk>")
    tok.chat_template = EVIL
    with pytest.raises(SecurityError):
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def _source_lines(pattern):
    hits = []
    for path in CODE:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return hits


def test_no_unsafe_deserialisation_in_the_code():
    assert [h for h in _source_lines(r"\btorch\.load\(") if "weights_only=True" not in h] == []
    assert _source_lines(r"\bpickle\.loads?\(") == []
    assert _source_lines(r"use_safetensors\s*=\s*False") == []


def test_remote_code_only_from_the_config():
    # trust_remote_code is never hard-wired on; where it is passed it comes from the user's setting.
    assert _source_lines(r"trust_remote_code\s*=\s*True") == []


def test_chat_templates_are_rendered_by_the_libraries_not_by_a_raw_jinja_environment():
    assert _source_lines(r"jinja2\.(Environment|Template)\(|from jinja2 import .*\b(Environment|Template)\b") == []
