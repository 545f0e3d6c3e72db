"""Token-level logit distillation (training.objective = "logits"): the student learns the teacher's
top-k distribution at each answer token, mixed with cross-entropy on the answer.

At an answer token the teacher gave its k most likely ids with their probabilities p_1..p_k; whatever
it gave every other id together is the remainder r = 1 - sum(p). The student's distribution is read on
the same k + 1 buckets: its probability of each of the k ids, and its own remaining mass (exact, a
log-sum-exp over every other id). The loss at that token is

    (1 - w) * CE  +  w * T^2 * KL(teacher buckets at T || student buckets at T)

where w = training.distill_weight and T = training.distill_temperature soften both bucket
distributions alike (p ** (1/T), renormalised); at T = 1 the KL is the plain one. Tokens without
teacher targets (seed rows, rows whose tokens did not line up, the end-of-turn marker) take CE alone.
The batch loss is the sum over answer tokens divided by their count, as in SFT, so a packed batch
gives the same loss as its rows padded side by side.

Targets travel as three tensors beside the batch, one row per answer token in batch order (row by row,
position by position: the order in which the loss reads the answer positions of a packed or padded
batch): teacher_ids (N x K), teacher_logprobs (N x K, -inf where there is no target) and nothing else;
a token without targets has -inf throughout.

torch is imported inside the functions that need it.
"""
from __future__ import annotations

from .packing import IGNORE_INDEX
from .sft_data import predicting_positions
from .teacher_topk import line_up

TARGET_KEYS = ("teacher_ids", "teacher_logprobs")
# Stands for log(0) on both sides of the KL: finite, so no 0 * inf appears in the gradient.
_LOG_ZERO = -1e4


# ---------------------------------------------------------------- rows and batches

def attach_targets(project, tokenizer, rows: list[dict], *, fresh: bool, on_event) -> None:
    """Before rendering: check that the teacher whose targets are stored shares the student's tokenizer,
    and (for a new run; a resumed run's rows carry theirs) give the rows their targets."""
    from .errors import DataError
    from .events import Status
    from .teacher_topk import attach, read_teacher_vocabulary, topk_path
    from .vocabulary import check_shared_vocabulary, tokenizer_vocabulary
    teacher = read_teacher_vocabulary(project)
    if teacher is None:
        raise DataError(f"{topk_path(project)}: no teacher log-probabilities for training.objective = logits",
                        "set generation.teacher_logprobs (e.g. 8) and generate rows with a llama.cpp teacher "
                        "that shares the student's tokenizer")
    shared = check_shared_vocabulary(teacher, tokenizer_vocabulary(tokenizer))
    on_event(Status(f"logit distillation: {shared.describe()}"))
    if fresh and not attach(project, rows, teacher):
        raise DataError(f"{topk_path(project)}: no training row has the teacher's log-probabilities",
                        "generate rows with generation.teacher_logprobs set")


def row_fields(row: dict) -> dict:
    """render_rows' `extra` for the logits objective: the row's stored targets, to be lined up."""
    return {"teacher_topk": row["teacher_topk"]} if "teacher_topk" in row else {}


def line_up_rows(data, max_length: int, on_event) -> dict:
    """After rendering: every rendered row's targets lined up with its answer tokens; the counts of
    the training rows, also reported as a status line."""
    from .events import Status
    counts = prepare_rows(data.train, max_length)
    prepare_rows(data.validation, max_length)
    on_event(Status(f"logit distillation: {counts['distilled']} rows with the teacher's top-k, "
                    f"{counts['fallback']} fall back to cross-entropy (their tokens differ from the "
                    f"teacher's), {counts['without']} without targets (seeds)"))
    return counts


def compute_loss(trainer, model, inputs: dict, return_outputs: bool, num_items_in_batch, cfg):
    """Trainer.compute_loss for training.objective = "logits"; the loss is normalised by the answer
    tokens of the whole accumulated batch (already scaled for gradient accumulation)."""
    loss_func = getattr(trainer, "logit_loss", None)
    if loss_func is None:
        loss_func = trainer.logit_loss = LogitDistillLoss(cfg.distill_weight, cfg.distill_temperature)
        trainer.loss_parts = loss_func.logged_parts
    inputs = loss_func.take_targets(dict(inputs))
    labels = inputs.pop("labels")
    outputs = model(**inputs)
    trainer.loss_is_scaled_for_ga = True
    loss = loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes     # num_items_in_batch counts every process's
    return (loss, outputs) if return_outputs else loss


def prepare_rows(items: list[dict], max_length: int) -> dict:
    """Turn each rendered row's teacher_topk record into per-answer-token targets (in place); returns
    the counts: rows distilled, rows that fell back to cross-entropy because their tokens did not line
    up, and rows without targets."""
    counts = {"distilled": 0, "fallback": 0, "without": 0}
    for item in items:
        record = item.pop("teacher_topk", None)
        if record is None:
            counts["without"] += 1
            continue
        lined = line_up(item["labels"], record, truncated=len(item["input_ids"]) >= max_length)
        if lined is None:
            counts["fallback"] += 1
            continue
        item["distill_ids"], item["distill_logprobs"] = lined
        counts["distilled"] += 1
    return counts


def collate_targets(features: list[dict]) -> dict:
    """The batch's teacher targets, one row per answer token, rows in feature order."""
    import torch
    ids, logprobs = [], []
    for f in features:
        answer = sum(1 for label in f["labels"] if label != IGNORE_INDEX)
        ids += f.get("distill_ids") or [[]] * answer
        logprobs += f.get("distill_logprobs") or [[]] * answer
    k = max((len(x) for x in ids), default=0) or 1
    out_ids = torch.zeros(len(ids), k, dtype=torch.long)
    out_lp = torch.full((len(ids), k), float("-inf"))
    for row, (i, lp) in enumerate(zip(ids, logprobs)):
        if i:
            out_ids[row, :len(i)] = torch.tensor(i, dtype=torch.long)
            out_lp[row, :len(lp)] = torch.tensor(lp, dtype=torch.float32)
    return {"teacher_ids": out_ids, "teacher_logprobs": out_lp}


class DistillCollator:
    """A batch as the wrapped collator makes it, plus the teacher targets of its answer tokens."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, features: list[dict]) -> dict:
        batch = self.inner(features)
        batch.update(collate_targets(features))
        return batch


# ---------------------------------------------------------------- the loss

def token_losses(logits, targets, teacher_ids, teacher_logprobs, temperature: float = 1.0):
    """Per answer token: (cross-entropy, KL to the teacher's buckets, whether it has teacher targets).
    logits: N x V; targets: N; teacher_ids, teacher_logprobs: N x K (-inf: no target)."""
    import torch
    import torch.nn.functional as F
    logq = F.log_softmax(logits.float(), dim=-1)
    ce = -logq.gather(1, targets[:, None]).squeeze(1)
    vocab = logq.shape[1]
    teacher_logprobs = teacher_logprobs.to(logq.device).float()
    teacher_ids = teacher_ids.to(logq.device)
    valid = torch.isfinite(teacher_logprobs) & (teacher_ids >= 0) & (teacher_ids < vocab)
    has = valid.any(1)
    kl = torch.zeros_like(ce)
    if not bool(has.any()):
        return ce, kl, has
    rows = has.nonzero().squeeze(1)
    lq, v = logq[rows], valid[rows]
    # Invalid slots point at a valid id of the same row, then count for nothing on either side.
    first_valid = v.float().argmax(1, keepdim=True)
    ids = torch.where(v, teacher_ids[rows], teacher_ids[rows].gather(1, first_valid))
    student_k = torch.where(v, lq.gather(1, ids), torch.full_like(lq[:, :1], _LOG_ZERO).expand_as(ids))
    student_rest = torch.logsumexp(lq.scatter(1, ids, float("-inf")), dim=1)
    teacher_k = torch.where(v, teacher_logprobs[rows], torch.full_like(student_k, _LOG_ZERO))
    rest = (1 - torch.where(v, teacher_logprobs[rows], torch.full_like(student_k, float("-inf"))).exp().sum(1))
    teacher_rest = torch.log(rest.clamp_min(1e-30)).clamp_min(_LOG_ZERO)
    t = float(temperature)
    p = F.log_softmax(torch.cat([teacher_k, teacher_rest[:, None]], 1) / t, dim=1)
    q = F.log_softmax(torch.cat([student_k, student_rest.clamp_min(_LOG_ZERO)[:, None]], 1) / t, dim=1)
    kl_rows = (p.exp() * (p - q)).sum(1) * (t * t)
    kl = kl.index_put((rows,), kl_rows)
    return ce, kl, has


class LogitDistillLoss:
    """Trainer's compute_loss_func for the logits objective. The Trainer hands it the batch's targets
    (`take_targets`, before the forward pass) and asks it for the logged parts (`logged_parts`): mean
    cross-entropy per answer token and mean KL per distilled token since the last log."""

    def __init__(self, weight: float, temperature: float):
        self.weight = float(weight)
        self.temperature = float(temperature)
        self._targets: dict | None = None
        self._sums = [0.0, 0, 0.0, 0]        # CE sum, answer tokens, KL sum, distilled tokens

    def take_targets(self, inputs: dict) -> dict:
        self._targets = {k: inputs.pop(k) for k in TARGET_KEYS if k in inputs}
        return inputs

    def logged_parts(self) -> dict:
        ce, tokens, kl, distilled = self._sums
        self._sums = [0.0, 0, 0.0, 0]
        parts = {}
        if tokens:
            parts["loss_ce"] = round(ce / tokens, 4)
        if distilled:
            parts["loss_kl"] = round(kl / distilled, 4)
        return parts

    def __call__(self, outputs, labels, num_items_in_batch=None):
        import torch
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if logits.shape[1] == labels.shape[1]:            # every position's logits
            logits, targets = logits[:, :-1], labels[:, 1:]
        else:                                             # only where an answer token is predicted
            targets = labels[:, predicting_positions(labels).to(labels.device) + 1]
        targets = targets.to(logits.device)
        answer = targets != IGNORE_INDEX
        targets_ = self._targets or {}
        self._targets = None
        ids = targets_.get("teacher_ids")
        logprobs = targets_.get("teacher_logprobs")
        count_here = int(answer.sum())
        if ids is None:
            ids = torch.zeros(count_here, 1, dtype=torch.long)
            logprobs = torch.full((count_here, 1), float("-inf"))
        if ids.shape[0] != count_here:
            raise RuntimeError(f"logit distillation: {ids.shape[0]} teacher targets for {count_here} answer "
                               f"tokens in the batch")
        ce, kl, has = token_losses(logits[answer], targets[answer], ids, logprobs, self.temperature)
        mixed = torch.where(has, (1 - self.weight) * ce + self.weight * kl, ce)
        count = answer.sum() if num_items_in_batch is None else num_items_in_batch
        if hasattr(count, "to"):
            count = count.to(mixed.device)
        if torch.is_grad_enabled():
            self._sums[0] += float(ce.detach().sum())
            self._sums[1] += count_here
            self._sums[2] += float(kl.detach()[has].sum())
            self._sums[3] += int(has.sum())
        return mixed.sum() / count
