"""Packing around a shared prefix: each row gets the logits and gradients it gets alone, for less work."""
import pytest

from stillroom.core import records
from stillroom.core.packing import (IGNORE_INDEX, MIN_SHARED_PREFIX, pack, row_tokens, shared_prefix_isolates_rows,
                                    shared_prefix_length)
from stillroom.core.sft_data import Collator, render_rows, selected_logits_loss

SYSTEM = "You route customer support tickets to one of four queues. Answer with the queue name only."


@pytest.fixture(scope="module")
def model_and_rows(tiny):
    from stillroom.core.student import load_student, load_tokenizer
    model, _ = load_student(str(tiny))
    tokenizer = load_tokenizer(tiny, for_training=True)
    rows = [records.make_row("Where is my parcel?", "shipping", system=SYSTEM),
            records.make_row("I forgot my password, help me log in please.", "account", system=SYSTEM),
            records.make_row("Refund me twice, you charged my card two times!", "billing", system=SYSTEM)]
    return model, tokenizer, render_rows(tokenizer, rows, [], 256).train


def row(ids, first_label):
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * first_label + ids[first_label:]}


def test_prefix_is_the_common_start_and_stops_before_any_trained_token():
    a, b = row(list(range(20)), 15), row(list(range(10)) + [99] * 10, 15)
    assert shared_prefix_length([a, b]) == 10
    # Position n-1 predicts token n: the prefix ends one token before the first label of any row.
    assert shared_prefix_length([a, row(list(range(20)), 8)]) == 7
    assert shared_prefix_length([a, row(list(range(MIN_SHARED_PREFIX - 1)) + [99] * 5, 6)]) == 0
    assert shared_prefix_length([a]) == 0
    assert shared_prefix_length([a, dict(a)]) == 14          # identical rows keep a token of their own
    assert shared_prefix_length([a, b], max_row_length=19) == 0


def test_packed_sequence_layout_and_mask():
    a, b = row([1, 2, 3, 4, 5, 6, 7], 6), row([1, 2, 3, 4, 8, 9], 5)
    batch = pack([a, b])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 4, 5]]
    mask = batch["attention_mask"][0, 0].int().tolist()
    assert mask[7] == [1, 1, 1, 1, 0, 0, 0, 1, 0]              # row b sees the prefix and itself only
    assert mask[5] == [1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert row_tokens(batch["position_ids"]) == 7 + 6
    plain = pack([a, b], share_prefix=False)
    assert "attention_mask" not in plain and plain["input_ids"].shape[1] == 13
    assert row_tokens(plain["position_ids"]) == 13


def test_each_row_gets_its_own_logits_and_the_same_loss_and_gradients(model_and_rows):
    import torch
    model, tokenizer, data = model_and_rows
    shared = Collator(tokenizer.pad_token_id, "pack", select_logits=True, share_prefix=True)(data)
    plain = Collator(tokenizer.pad_token_id, "pack", select_logits=True)(data)
    assert "attention_mask" in shared
    assert shared["input_ids"].shape[1] <= plain["input_ids"].shape[1] - 2 * 10    # the system prompt runs once
    assert row_tokens(shared["position_ids"]) == sum(len(r["input_ids"]) for r in data)

    def loss_and_grads(batch):
        model.zero_grad()
        labels = batch.pop("labels")
        outputs = model(**batch, use_cache=False)
        loss = selected_logits_loss(outputs, labels)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    model.train()
    torch.manual_seed(0)
    loss_shared, grads_shared = loss_and_grads(dict(shared))
    loss_plain, grads_plain = loss_and_grads(dict(plain))
    model.eval()
    assert torch.allclose(loss_shared, loss_plain, atol=1e-5)
    assert len(grads_shared) == len(grads_plain) > 0
    assert all(torch.allclose(g, h, atol=1e-5) for g, h in zip(grads_shared, grads_plain))


def test_probe_accepts_sdpa_and_refuses_an_attention_that_adds_the_mask(model_and_rows):
    model, _, data = model_and_rows
    assert shared_prefix_isolates_rows(model, data)
    implementation = model.config._attn_implementation
    try:
        model.config._attn_implementation = "eager"     # eager adds a mask; a boolean one goes wrong
        assert not shared_prefix_isolates_rows(model, data)
    finally:
        model.config._attn_implementation = implementation
