"""Soft-label distillation for classification: the student learns the teacher's label distribution.

The teacher keeps a distribution over the labels with each kept row (`scores.label_probs`). The student's
side of it is the sequence log-probability of every label written as the whole answer after the row's
prompt, normalised over the label set. Both are softened by a temperature T and compared by
KL(teacher || student), mixed with the answer's cross-entropy:

    loss = (1 - w) * CE(answer) + w * T^2 * KL(p_teacher^T || softmax(log p_student(label | prompt) / T))

It works on label strings, not tokens, so teacher and student may have different tokenizers (the
bundled Gemma teacher into the SmolLM2 student).

How the labels are scored: in the same forward pass as the answer. Every label variant of a row is
rendered with the student's chat template; the variants agree up to a branch point inside the answer.
The row itself is the prompt and its own answer as always (so the answer's cross-entropy is exactly the
sft loss); each other label's tokens after the branch point are appended as a branch whose position
ids continue from the branch point and which sees only the row's prompt and itself (a tree mask, the
same 4-D mask the shared-prefix packing uses). A row then costs its own tokens plus a few label tokens
per label, instead of the whole prompt once per label in a second pass. Where the model cannot take a
4-D mask (or rows are padded rather than packed), each branch becomes a row of its own instead (the
prompt repeated): the same numbers, more work. Seeds carry no teacher distribution: their target is
their own label (one-hot).

torch is imported inside the functions that need it.
"""
from __future__ import annotations

from typing import Optional, Sequence

from . import records
from .errors import DataError
from .packing import IGNORE_INDEX, pack


# ---------------------------------------------------------------- rows

def teacher_distribution(row: dict, labels: Sequence[str]) -> Optional[list[float]]:
    """The row's target over `labels`: the teacher's label_probs for a generated row, one-hot for a
    seed (or any row that is not generated), None for a generated row without them."""
    probs = (row.get("scores") or {}).get("label_probs")
    if probs:
        values = [max(0.0, float(probs.get(label, 0.0))) for label in labels]
        total = sum(values)
        if total > 0:
            return [v / total for v in values]
    if records.synthetic_index(row) is not None:
        return None
    answer = records.answer_text(row).strip()
    return [1.0 if label == answer else 0.0 for label in labels] if answer in labels else None


def check_rows(rows: Sequence[dict], labels: Sequence[str], where) -> None:
    """DataError when generated training rows lack the teacher's label distribution."""
    missing = [r for r in rows if records.synthetic_index(r) is not None
               and teacher_distribution(r, labels) is None]
    if missing:
        raise DataError(f"{where}: {len(missing)} of {len(rows)} training rows have no teacher label "
                        f"distribution (scores.label_probs; first: {missing[0].get('id')}), which "
                        f"training.objective = \"soft-labels\" learns from",
                        "generate them with a teacher that scores labels or returns log-probabilities, "
                        "prune them, or set training.objective = \"sft\"")


def label_branches(tokenizer, row: dict, labels: Sequence[str], max_length: int, render_row) -> dict:
    """What the collator needs to score every label after this row's prompt, as extra fields of the
    rendered row: `branch_at` (where the label variants part), `label_branches` (each label's tokens from
    there; the row's own label's are the row's own), `branch_scored` (which of those tokens are the
    answer's, and so scored), `answer_branch` and `teacher`. Empty when the row cannot be scored
    (its answer is not a label, or a label is cut off by max_length)."""
    target = teacher_distribution(row, labels)
    answer = records.answer_text(row).strip()
    if target is None or answer not in labels:
        return {}
    prompt = records.prompt_messages(row)
    variants = []
    for label in labels:
        rendered = render_row(tokenizer, prompt + [{"role": "assistant", "content": label}], max_length)
        if rendered is None or rendered.truncated:
            return {}
        variants.append(rendered)
    at = _common_prefix(v.input_ids for v in variants)
    if at == 0 or any(len(v.input_ids) <= at for v in variants):
        return {}
    return {"branch_at": at,
            "label_branches": [v.input_ids[at:] for v in variants],
            "branch_scored": [[label != IGNORE_INDEX for label in v.labels[at:]] for v in variants],
            "answer_branch": labels.index(answer), "teacher": target}


def _common_prefix(sequences) -> int:
    sequences = list(sequences)
    n = 0
    while all(n < len(s) for s in sequences) and len({s[n] for s in sequences}) == 1:
        n += 1
    return n


# ---------------------------------------------------------------- batches

class SoftLabelCollator:
    """The training collator plus, in `soft_labels`, where every label token of every row sits in the
    batch: rows (batch index), columns of the logits that predict it, the target token, its (row,
    label) group, and the teacher's distributions."""

    def __init__(self, collator, tree: bool):
        self.collator = collator
        self.tree = tree and collator.mode == "pack"

    def __call__(self, features: list[dict]) -> dict:
        import torch
        plain = [{k: f[k] for k in ("input_ids", "labels")} for f in features]
        scored = [i for i, f in enumerate(features) if f.get("label_branches")]
        if self.tree:
            for i in scored:
                f = features[i]
                plain[i]["branches"] = [(f["branch_at"], b) for n, b in enumerate(f["label_branches"])
                                        if n != f["answer_branch"]]
        else:
            for i in scored:             # each other label's variant as a row of its own
                f = features[i]
                for n, branch in enumerate(f["label_branches"]):
                    if n != f["answer_branch"]:
                        ids = f["input_ids"][:f["branch_at"]] + branch
                        plain.append({"input_ids": ids, "labels": [IGNORE_INDEX] * len(ids),
                                      "of": (i, n)})
        places = self._places(plain)
        batch = self._collate(plain)
        index, targets, groups, teacher = [], [], [], []
        expanded = {p["of"]: j for j, p in enumerate(plain) if "of" in p}
        for r, i in enumerate(scored):
            f = features[i]
            at = f["branch_at"]
            # the tree's branches are the other labels, in order: label n's place among them
            slot = {n: s for s, n in enumerate(n for n in range(len(f["label_branches"]))
                                               if n != f["answer_branch"])}
            for n, (branch, is_scored) in enumerate(zip(f["label_branches"], f["branch_scored"])):
                for k, (token, keep) in enumerate(zip(branch, is_scored)):
                    if not keep:
                        continue
                    if k == 0 or n == f["answer_branch"]:
                        where = places[i]["row"][at + k - 1]
                    elif self.tree:
                        where = places[i]["branches"][slot[n]][k - 1]
                    else:
                        where = places[expanded[(i, n)]]["row"][at + k - 1]
                    index.append(where)
                    targets.append(token)
                    groups.append(r * len(f["label_branches"]) + n)
            teacher.append(f["teacher"])
        if scored:
            index_t = torch.tensor(index, dtype=torch.long).reshape(-1, 2)
            batch["soft_labels"] = {"index": index_t, "targets": torch.tensor(targets),
                                    "groups": torch.tensor(groups), "teacher": torch.tensor(teacher)}
            if "logits_to_keep" in batch:
                from .sft_data import predicting_positions
                keep = torch.cat([predicting_positions(batch["labels"]), index_t[:, 1]]).unique(sorted=True)
                batch["logits_to_keep"] = keep
        return batch

    def _collate(self, plain: list[dict]) -> dict:
        rows = _layout_rows(plain)
        c = self.collator
        if c.mode != "pack":
            return c([{k: r[k] for k in ("input_ids", "labels")} for r in rows])
        batch = pack(rows, share_prefix=c.share_prefix, max_row_length=c.max_row_length)
        if c.select_logits:
            from .sft_data import predicting_positions
            batch["logits_to_keep"] = predicting_positions(batch["labels"])
        return batch

    def _places(self, plain: list[dict]) -> list[dict]:
        """For each row of `plain`, the (batch index, column) of each of its tokens and of each of its
        branches' tokens, as the collator lays them out."""
        if self.collator.mode != "pack":
            return [{"row": [(b, j) for j in range(len(p["input_ids"]))], "branches": []}
                    for b, p in enumerate(plain)]
        from .packing import packed_places
        c = self.collator
        return packed_places(_layout_rows(plain), share_prefix=c.share_prefix, max_row_length=c.max_row_length)


def _layout_rows(plain: list[dict]) -> list[dict]:
    """The rows as pack() takes them (without the note of which row a label's own row stands for)."""
    return [{k: v for k, v in p.items() if k != "of"} for p in plain]


# ---------------------------------------------------------------- the loss

def label_log_probs(logits, soft: dict, keep=None):
    """The student's sequence log-probability of every label of every scored row, [rows, labels]."""
    import torch
    index = soft["index"].to(logits.device)
    columns = index[:, 1].contiguous()
    if keep is not None:
        columns = torch.searchsorted(keep.to(logits.device), columns)
    picked = logits[index[:, 0], columns].float().log_softmax(-1)
    token_lp = picked.gather(-1, soft["targets"].to(logits.device)[:, None]).squeeze(-1)
    teacher = soft["teacher"]
    total = torch.zeros(teacher.numel(), device=logits.device, dtype=token_lp.dtype)
    total = total.index_add(0, soft["groups"].to(logits.device), token_lp)
    return total.view(teacher.shape)


def soft_label_kl(student_label_lp, teacher, temperature: float):
    """Per-row KL(teacher^T || softmax(student / T)), where teacher^T ∝ teacher^(1/T)."""
    import torch
    teacher = teacher.to(student_label_lp.device).float().clamp_min(0)
    teacher_t = teacher.clamp_min(1e-12).log() / temperature
    teacher_t = torch.where(teacher > 0, teacher_t, torch.full_like(teacher_t, -float("inf")))
    teacher_t = teacher_t.log_softmax(-1)
    student_t = (student_label_lp / temperature).log_softmax(-1)
    p = teacher_t.exp()
    return (p * (teacher_t.clamp_min(-1e30) - student_t)).sum(-1)


def soft_label_loss(logits, labels, soft: Optional[dict], *, keep=None, weight: float, temperature: float,
                    num_items_in_batch=None, accumulation_steps: int = 1):
    """(1 - w) * the answer's cross-entropy + w * T^2 * mean KL over the scored rows. The cross-entropy
    is over the tokens of the whole accumulated batch (num_items_in_batch) like sft; the KL mean over
    this batch's rows, divided by the accumulation steps, so the sum over them is a mean too."""
    import torch.nn.functional as F
    if keep is None:                     # full logits: column c predicts token c + 1
        import torch
        keep = torch.arange(labels.shape[1] - 1, device=logits.device)
        logits = logits[:, :-1]
    keep = keep.to(labels.device)
    targets = labels[:, keep + 1].to(logits.device)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="sum")
    if num_items_in_batch is None:
        ce = ce / (targets != IGNORE_INDEX).sum().clamp_min(1) / accumulation_steps
    else:
        ce = ce / (num_items_in_batch.to(ce.device) if hasattr(num_items_in_batch, "to") else num_items_in_batch)
    if soft is None or weight == 0:
        return (1 - weight) * ce
    student = label_log_probs(logits, soft, keep)
    kl = soft_label_kl(student, soft["teacher"], temperature).mean() / accumulation_steps
    return (1 - weight) * ce + weight * temperature ** 2 * kl


# ---------------------------------------------------------------- training hooks

def row_fields(tokenizer, labels: Sequence[str], max_length: int):
    """render_rows' `extra`: the label branches of each row."""
    from .sft_data import render_row

    def fields(row: dict) -> dict:
        return label_branches(tokenizer, row, list(labels), max_length, render_row)
    return fields


def compute_loss(trainer, model, inputs: dict, return_outputs: bool, num_items_in_batch, cfg):
    """Trainer.compute_loss for training.objective = "soft-labels"; the loss is already scaled for
    gradient accumulation."""
    soft = inputs.pop("soft_labels", None)
    labels = inputs.pop("labels")
    outputs = model(**inputs)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    steps = getattr(trainer, "current_gradient_accumulation_steps", 1) if model.training else 1
    trainer.loss_is_scaled_for_ga = True
    if num_items_in_batch is not None and getattr(trainer.args, "average_tokens_across_devices", False):
        # The count is over every process's tokens and DDP averages the gradients: as Trainer does.
        num_items_in_batch = num_items_in_batch / trainer.accelerator.num_processes
    loss = soft_label_loss(logits, labels, soft, keep=inputs.get("logits_to_keep"), weight=cfg.distill_weight,
                           temperature=cfg.distill_temperature, num_items_in_batch=num_items_in_batch,
                           accumulation_steps=steps or 1)
    return (loss, outputs) if return_outputs else loss
