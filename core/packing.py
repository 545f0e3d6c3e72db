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
    (True = may attend) when a prefix is shared or a row has branches. Each row's first label is
    dropped: it would be predicted from the previous row's last token.

    A row may carry `branches`, [(at, ids)]: other continuations of its first `at` tokens, laid after
    the row, with positions counting on from `at`, seeing the row's first `at` tokens and themselves
    only (core/soft_labels.py scores every label this way). They carry no labels."""
    import torch
    shared = shared_prefix_length(features, max_row_length) if share_prefix else 0
    ids, labels, positions, segments, branch = [], [], [], [], []
    if shared:
        ids += features[0]["input_ids"][:shared]
        labels += [IGNORE_INDEX] * shared
        positions += list(range(shared))
        segments += [-1] * shared
        branch += [0] * shared
    for index, f in enumerate(features):
        row_ids = f["input_ids"][shared:]
        row_labels = list(f["labels"][shared:])
        row_labels[0] = IGNORE_INDEX
        ids += row_ids
        labels += row_labels
        positions += list(range(shared, shared + len(row_ids)))
        segments += [index] * len(row_ids)
        # With branches, the row's tokens from the first branch point on are its own branch (1).
        split = min((at for at, _ in f.get("branches", ())), default=None)
        branch += [0 if split is None or j < split else 1 for j in range(shared, shared + len(row_ids))]
        for number, (at, extra) in enumerate(f.get("branches", ()), 2):
            ids += extra
            labels += [IGNORE_INDEX] * len(extra)
            positions += list(range(at, at + len(extra)))
            segments += [index] * len(extra)
            branch += [number] * len(extra)
    batch = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
             "position_ids": torch.tensor([positions])}
    if shared or any(b > 1 for b in branch):
        segment, part = torch.tensor(segments), torch.tensor(branch)
        same_row = (segment[:, None] == segment[None, :]) & ((part[None, :] == 0) | (part[:, None] == part[None, :]))
        visible = same_row | (segment[None, :] == -1)
        causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
        batch["attention_mask"] = (visible & causal)[None, None]
    return batch


def packed_places(features: list[dict], *, share_prefix: bool = True, max_row_length: Optional[int] = None
                  ) -> list[dict]:
    """Where pack() lays out each row: {"row": [(0, column) of each of its tokens], "branches":
    [[(0, column) of each token] of each branch]} (shared-prefix tokens sit at the head)."""
    shared = shared_prefix_length(features, max_row_length) if share_prefix else 0
    column = shared
    out = []
    for f in features:
        n = len(f["input_ids"])
        row = [(0, j) if j < shared else (0, column + j - shared) for j in range(n)]
        column += n - shared
        branches = []
        for _, extra in f.get("branches", ()):
            branches.append([(0, column + k) for k in range(len(extra))])
            column += len(extra)
        out.append({"row": row, "branches": branches})
    return out


def row_tokens(position_ids) -> int:
    """Tokens of the rows a packed sequence stands for, shared prefix counted once per row: a row is a
    run of positions rising by one, and it stands for (its last position + 1) tokens."""
    import torch
    positions = position_ids.flatten()
    ends = torch.ones_like(positions, dtype=torch.bool)
    ends[:-1] = positions[1:] != positions[:-1] + 1
    return int((positions[ends] + 1).sum())


# ---------------------------------------------------------------- probes (once per training run)

def packing_isolates_rows(model, rows: list[dict], probe_tokens: int = 24) -> bool:
    """Two rows run packed must give the logits they give alone (the model honours packed position ids)."""
    if len(rows) < 2:
        return True
    # Two different token runs: rows that open alike (one chat header, one system prompt) would pass
    # even where they see each other, since attending to an exact copy of oneself changes nothing.
    a = rows[0]["input_ids"][:probe_tokens]
    b = rows[1]["input_ids"][-probe_tokens:]
    if b == a[:len(b)] or len(b) < 2:
        b = a[::-1]
    batch = pack([_unlabelled(a), _unlabelled(b)], share_prefix=False)
    return _logits_match(model, batch, [(a, 0), (b, 0)])


def shared_prefix_isolates_rows(model, rows: list[dict], probe_tokens: int = 24) -> bool:
    """Two rows packed around a shared prefix must give the logits they give alone: the model takes a
    custom 4-D mask as given (eager attention, for one, would add it instead)."""
    if not rows:
        return False
    a = rows[0]["input_ids"][:probe_tokens]
    other = rows[1]["input_ids"] if len(rows) > 1 else a[::-1]
    if len(a) <= MIN_SHARED_PREFIX:
        return False
    # b shares exactly MIN_SHARED_PREFIX leading tokens with a
    b = a[:MIN_SHARED_PREFIX] + [t for t in other if t != a[MIN_SHARED_PREFIX]][:probe_tokens]
    if len(b) <= MIN_SHARED_PREFIX:
        return False
    batch = pack([_unlabelled(a), _unlabelled(b)])
    if "attention_mask" not in batch:
        return False
    return _logits_match(model, batch, [(a, 0), (b, MIN_SHARED_PREFIX)])


def _unlabelled(ids: list[int]) -> dict:
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * len(ids)}


def _logits_match(model, batch: dict, rows: list[tuple[list[int], int]]) -> bool:
    """The packed batch's logits equal each row's logits alone (from its `skip`-th token on), in order."""
    import torch
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
            packed = model(**inputs, use_cache=False).logits[0]
            expected = torch.cat([model(input_ids=torch.tensor([ids]), use_cache=False).logits[0][skip:]
                                  for ids, skip in rows])
    except Exception:        # noqa: BLE001 - an attention implementation that refuses the layout
        return False
    finally:
        model.train(was_training)
    tolerance = 1e-3 if packed.dtype == torch.float32 else 1e-1
    return packed.shape == expected.shape and bool(torch.allclose(packed.float(), expected.float(),
                                                                  atol=tolerance, rtol=tolerance))
