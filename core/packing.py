"""Packing a batch of rows into one padding-free sequence, with the prefix they all share computed once.

Distillation rows usually open the same way (the chat template's header, a system prompt, the task's
instructions) and differ only in the input and the answer. Packed naively, every row runs that
prefix through the model again. Here the batch's longest common prefix appears once at the head of the
sequence; each row continues after it with its position ids counting on from the prefix, and a 4-D
mask lets every row attend to the shared prefix and to its own tokens only. A causal model's hidden
states at a position depend only on the tokens before it, so each row gets exactly the logits it gets
alone, for a fraction of the work when the prefix is long.

The prefix stops before the first token any row trains on, so no loss term is shared or lost; a
batch with no useful common prefix is packed as plain back-to-back rows with restarting position ids.
"""
from __future__ import annotations

from typing import Optional

IGNORE_INDEX = -100
# Below this, sharing saves less than the 4-D mask costs.
MIN_SHARED_PREFIX = 4


def shared_prefix_length(features: list[dict], max_row_length: Optional[int] = None) -> int:
    """Leading tokens every row has in common, up to (not including) a token any row trains on; 0 when
    sharing does not pay or when a row is longer than max_row_length (a sliding attention window the
    4-D mask would not express)."""
    if len(features) < 2:
        return 0
    rows = [f["input_ids"] for f in features]
    if max_row_length is not None and max(len(r) for r in rows) > max_row_length:
        return 0
    first = rows[0]
    limit = min(len(r) for r in rows) - 1            # every row keeps at least one token of its own
    for f in features:
        # Shared positions 0..n-1 predict tokens 1..n: none of those may carry a label.
        labels = f["labels"]
        first_label = next((i for i in range(1, len(labels)) if labels[i] != IGNORE_INDEX), len(labels))
        limit = min(limit, first_label - 1)
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows[1:]):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


def pack(features: list[dict], *, share_prefix: bool = True, max_row_length: Optional[int] = None) -> dict:
    """One sequence (batch of 1): input_ids, labels, position_ids, plus a boolean 4-D attention_mask
    (True = may attend) when a prefix is shared. Each row's first label is dropped: it would be
    predicted from the previous row's last token."""
    import torch
    shared = shared_prefix_length(features, max_row_length) if share_prefix else 0
    ids, labels, positions, segments = [], [], [], []
    if shared:
        ids += features[0]["input_ids"][:shared]
        labels += [IGNORE_INDEX] * shared
        positions += list(range(shared))
        segments += [-1] * shared
    for index, f in enumerate(features):
        row_ids = f["input_ids"][shared:]
        row_labels = list(f["labels"][shared:])
        row_labels[0] = IGNORE_INDEX
        ids += row_ids
        labels += row_labels
        positions += list(range(shared, shared + len(row_ids)))
        segments += [index] * len(row_ids)
    batch = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
             "position_ids": torch.tensor([positions])}
    if shared:
        segment = torch.tensor(segments)
        visible = (segment[:, None] == segment[None, :]) | (segment[None, :] == -1)
        causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
        batch["attention_mask"] = (visible & causal)[None, None]
    return batch


def row_tokens(position_ids) -> int:
    """Tokens of the rows a packed sequence stands for, shared prefix counted once per row: a row is a
    run of positions rising by one, and it stands for (its last position + 1) tokens."""
    import torch
    positions = position_ids.flatten()
    ends = torch.ones_like(positions, dtype=torch.bool)
    ends[:-1] = positions[1:] != positions[:-1] + 1
    return int((positions[ends] + 1).sum())
