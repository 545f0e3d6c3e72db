"""Whether a teacher and a student share a tokenizer, checked rather than assumed.

Token-level distillation compares the teacher's and the student's probabilities of the same token ids,
so it is only meaningful when every id names the same token on both sides. Two vocabularies match
when every id both have holds the same token string (GGUF's `tokenizer.ggml.tokens` and the Hugging
Face tokenizer's `convert_ids_to_tokens` use the same spelling: `Ġthe` for byte-level BPE, `▁the` for
SentencePiece). The one tolerance: one side may have extra ids at the end when every one of them is a
special or added token (a chat model's extra control tokens); the teacher's probability on such an
id counts towards the remainder the student is compared on.

llama_cpp and transformers are imported inside the functions that read a vocabulary.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError

@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id, and the ids that are special (control or added) tokens."""
    tokens: tuple
    special: frozenset = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def digest(self) -> str:
        """A short fingerprint of the token strings, stored with the teacher's targets."""
        return hashlib.sha256(json.dumps(list(self.tokens), ensure_ascii=False).encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"size": len(self.tokens), "digest": self.digest, "tokens": list(self.tokens),
                "special": sorted(self.special)}

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        return cls(tuple(data["tokens"]), frozenset(data.get("special", ())))


@dataclass(frozen=True)
class SharedVocabulary:
    """The outcome of a successful check."""
    compared: int            # ids both sides have, all equal
    teacher_extra: int       # special ids only the teacher has, at the end
    student_extra: int       # special ids only the student has, at the end

    def describe(self) -> str:
        extra = [f"{n} extra special tokens on the {side}" for n, side in
                 ((self.teacher_extra, "teacher"), (self.student_extra, "student")) if n]
        return f"shared tokenizer: {self.compared} tokens match" + (f" ({', '.join(extra)})" if extra else "")


def check_shared_vocabulary(teacher: Vocabulary, student: Vocabulary, *, teacher_name: str = "teacher",
                            student_name: str = "student") -> SharedVocabulary:
    """The vocabularies match id for id (see the module docstring), or a ModelError says where not."""
    common = min(len(teacher), len(student))
    differ = [i for i in range(common) if teacher.tokens[i] != student.tokens[i]]
    if differ:
        first = differ[0]
        raise ModelError(
            f"{teacher_name} and {student_name} do not share a tokenizer: id {first} is "
            f"{teacher.tokens[first]!r} for the teacher and {student.tokens[first]!r} for the student"
            + (f" ({len(differ) - 1} more ids differ)" if len(differ) > 1 else ""),
            "token-level logit distillation needs the same tokenizer; use training.objective = sft "
            "or soft-labels")
    for longer, shorter, name in ((teacher, student, teacher_name), (student, teacher, student_name)):
        plain = [i for i in range(len(shorter), len(longer)) if i not in longer.special]
        if plain:
            raise ModelError(
                f"{teacher_name} and {student_name} do not share a tokenizer: the {name} has "
                f"{len(longer) - len(shorter)} more tokens, and id {plain[0]} ({longer.tokens[plain[0]]!r}) "
                f"is an ordinary token",
                "token-level logit distillation needs the same tokenizer; use training.objective = sft "
                "or soft-labels")
    return SharedVocabulary(common, max(0, len(teacher) - common), max(0, len(student) - common))


# ---------------------------------------------------------------- reading vocabularies

def gguf_vocabulary(path: Path | str) -> Vocabulary:
    """The vocabulary of a GGUF file as llama.cpp reads it (its vocabulary only; no weights load)."""
    from .backends.llamacpp import _silence_llama_log
    from .backends.llamacpp_load import open_gguf
    path = Path(path)
    _silence_llama_log()
    try:
        llm = open_gguf(path, vocab_only=True, verbose=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: llama.cpp cannot read the GGUF's vocabulary: {exc}") from None
    try:
        return llama_vocabulary(llm)
    finally:
        llm.close()


def llama_vocabulary(llm) -> Vocabulary:
    """The vocabulary of a loaded `llama_cpp.Llama`: token texts by id, and its control, user-defined,
    unknown and unused tokens as special."""
    import llama_cpp
    model = llm._model
    special_attrs = (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
                     | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN | llama_cpp.LLAMA_TOKEN_ATTR_UNUSED)
    size = llm.n_vocab()
    tokens = tuple(model.token_get_text(i) for i in range(size))
    special = frozenset(i for i in range(size) if model.token_get_attr(i) & special_attrs)
    return Vocabulary(tokens, special)


def tokenizer_vocabulary(tokenizer) -> Vocabulary:
    """The vocabulary of a Hugging Face tokenizer, added tokens included."""
    size = len(tokenizer)
    tokens = tuple(t if t is not None else "" for t in tokenizer.convert_ids_to_tokens(list(range(size))))
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return Vocabulary(tokens, frozenset(i for i in special if 0 <= i < size))


def model_vocabulary(ref: str, *, project_dir: Path | None = None) -> Vocabulary:
    """The vocabulary of a student or teacher reference: a GGUF's metadata, or a model folder's
    tokenizer. A server has no vocabulary to read."""
    from .models import resolve
    model = resolve(ref, project_dir=project_dir)
    if model.kind == "gguf":
        return gguf_vocabulary(model.path)
    if model.kind == "openai":
        raise ModelError(f"{ref}: a server does not tell its tokenizer; cannot check it")
    from transformers import AutoTokenizer
    return tokenizer_vocabulary(AutoTokenizer.from_pretrained(str(model.path)))
