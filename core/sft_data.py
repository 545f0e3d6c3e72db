"""Training rows as token ids: each chat row rendered with the student's chat template, labels on the
assistant's tokens only (-100 elsewhere), a seeded validation split, the data hash a run records, the
collator that packs or pads a batch, and the loss over only the logits that predict an answer token.

torch is imported inside the functions that need it.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

from .packing import IGNORE_INDEX, pack


@dataclass
class RenderedRow:
    input_ids: list
    labels: list
    truncated: bool


def _render(tokenizer, messages: list, **kw) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def assistant_spans(tokenizer, messages: list) -> tuple[str, list[tuple[int, int]]]:
    """The chat-template text of `messages` and the character spans the assistant wrote (each turn's
    content and its end-of-turn marker, but not the role header the template puts before it)."""
    full = _render(tokenizer, messages)
    spans = []
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = full if i == len(messages) - 1 else _render(tokenizer, messages[:i + 1])
        if full.startswith(upto) and upto.startswith(before):
            end = len(upto.rstrip())
            if end > len(before):
                spans.append((len(before), end))
        elif i == last_assistant and full.startswith(before):
            # Templates that rewrite earlier turns (e.g. dropping reasoning): train the last turn only.
            spans.append((len(before), len(full.rstrip())))
    return full, spans


def render_row(tokenizer, messages: list, max_length: int) -> RenderedRow | None:
    """Token ids and labels for one chat row: labels are the ids on assistant tokens, -100 elsewhere.
    Rows longer than max_length are cut at the end. None when no assistant token is left."""
    text, spans = assistant_spans(tokenizer, messages)
    if not spans:
        return None
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [tok if any(s <= start < e for s, e in spans) and end > start else IGNORE_INDEX
                  for tok, (start, end) in zip(ids, enc["offset_mapping"])]
    else:  # slow tokenizers: tokenize piece by piece
        ids, labels, pos = [], [], 0
        for start, end in spans:
            head = tokenizer(text[pos:start], add_special_tokens=False)["input_ids"]
            body = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
            ids += head + body
            labels += [IGNORE_INDEX] * len(head) + body
            pos = end
        tail = tokenizer(text[pos:], add_special_tokens=False)["input_ids"]
        ids += tail
        labels += [IGNORE_INDEX] * len(tail)
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if labels:
        labels[0] = IGNORE_INDEX      # nothing predicts a row's first token
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return RenderedRow(ids, labels, truncated)


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded validation split held out from the training rows (none when too few rows)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    count = int(round(len(rows) * fraction)) if fraction > 0 else 0
    if count and len(rows) - count < 1:
        count = 0
    held = set(order[:count])
    return ([r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held])


def data_hash(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row["messages"], ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class RenderedData:
    train: list
    validation: list
    truncated: int
    dropped: int
    train_tokens: int
    label_tokens: int


def render_rows(tokenizer, train_rows: list[dict], validation_rows: list[dict], max_length: int,
                extra=None) -> RenderedData:
    """`extra(row)`, when given, adds fields to each rendered row (what a training objective needs)."""
    out = {"train": [], "validation": []}
    truncated = dropped = tokens = label_tokens = 0
    for name, rows in (("train", train_rows), ("validation", validation_rows)):
        for row in rows:
            rendered = render_row(tokenizer, row["messages"], max_length)
            if rendered is None:
                dropped += 1
                continue
            truncated += rendered.truncated
            if name == "train":
                tokens += len(rendered.input_ids)
                label_tokens += sum(1 for x in rendered.labels if x != IGNORE_INDEX)
            out[name].append({"input_ids": rendered.input_ids, "labels": rendered.labels,
                              **(extra(row) if extra else {})})
    return RenderedData(out["train"], out["validation"], truncated, dropped, tokens, label_tokens)


class Collator:
    """pack: a batch's rows become one padding-free sequence (core/packing.py): position ids restart at
    each row, so transformers keeps rows apart with a block-diagonal causal mask; with share_prefix,
    the rows' common prefix runs once and a 4-D mask keeps them apart. group / pad: right-padding with
    an attention mask."""

    def __init__(self, pad_id: int, mode: str = "pack", select_logits: bool = False, *,
                 share_prefix: bool = False, max_row_length: int | None = None):
        self.pad_id = pad_id
        self.mode = mode
        self.select_logits = select_logits
        self.share_prefix = share_prefix
        self.max_row_length = max_row_length

    def __call__(self, features: list[dict]) -> dict:
        import torch
        if self.mode == "pack":
            batch = pack(features, share_prefix=self.share_prefix, max_row_length=self.max_row_length)
        else:
            width = max(len(f["input_ids"]) for f in features)
            ids = [f["input_ids"] + [self.pad_id] * (width - len(f["input_ids"])) for f in features]
            labels = [f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features]
            mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
            batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                     "attention_mask": torch.tensor(mask)}
        if self.select_logits:
            batch["logits_to_keep"] = predicting_positions(batch["labels"])
        return batch


def predicting_positions(labels):
    """Positions whose next token carries a label: the only places the LM head must run. Answers are
    short next to prompts, so skipping the rest saves most of the vocabulary projection."""
    return (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().flatten()


def selected_logits_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy over logits computed only at `predicting_positions(labels)` (Trainer's
    compute_loss_func): the same value as the model's own shifted loss, for a fraction of the work."""
    import torch.nn.functional as F
    keep = predicting_positions(labels).to(labels.device)
    targets = labels[:, keep + 1]
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1).to(logits.device),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    if num_items_in_batch is None:
        count = (targets != IGNORE_INDEX).sum()
    else:
        count = num_items_in_batch
    if hasattr(count, "to"):
        count = count.to(loss.device)
    return loss / count


def supports_logits_to_keep(model) -> bool:
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


class ListDataset:
    """A plain map-style dataset (torch's Dataset protocol: __len__ and __getitem__)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]
