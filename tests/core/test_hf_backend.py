import threading

import pytest

from stillroom.core.backends.base import SamplingParams, TextModel, choose_mode
from stillroom.core.backends.hf import HFModel

from tiny import tiny_adapter_dir, tiny_llama_dir

MESSAGES = [{"role": "system", "content": "Route the ticket."}, {"role": "user", "content": "My parcel is late"}]
OTHER = [{"role": "user", "content": "The app crashes every time I open the settings page on my phone"}]


@pytest.fixture(scope="module")
def model():
    return HFModel.from_folder(tiny_llama_dir())


def test_protocol_and_chat_template(model):
    assert isinstance(model, TextModel)
    assert model.supports_chat and not model.is_base
    assert choose_mode(model) == "chat"
    rendered = model.render_chat(MESSAGES)
    assert rendered.endswith("<|im_start|>assistant\n")
    eos = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert eos in model.stop_ids


def test_greedy_chat_is_deterministic_and_reports_tokens(model):
    params = SamplingParams(max_tokens=8)
    one = model.chat(MESSAGES, params)
    two = model.chat(MESSAGES, params)
    assert one.text == two.text and one.text
    assert one.completion_tokens == 8 and one.finish_reason == "length"
    assert one.prompt_tokens == len(model.tokenizer(model.render_chat(MESSAGES), add_special_tokens=False)["input_ids"])
    assert one.seconds > 0 and one.first_token_seconds is not None


def test_streaming_pieces_add_up_to_the_answer(model):
    pieces = []
    completion = model.chat(MESSAGES, SamplingParams(max_tokens=10), on_token=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == completion.text


def test_batch_with_left_padding_equals_one_at_a_time(model):
    params = SamplingParams(max_tokens=8)
    single = [model.chat(m, params).text for m in (MESSAGES, OTHER)]
    batch = model.chat_batch([MESSAGES, OTHER, MESSAGES], params)
    assert [c.text for c in batch] == single + single[:1]
    assert batch[0].prompt_tokens < batch[1].prompt_tokens       # padding is not counted


def test_complete_batch_matches_complete(model):
    params = SamplingParams(max_tokens=6)
    prompts = ["Ticket: my card was charged twice\nTeam:", "Ticket: where is my parcel\nTeam:"]
    assert [c.text for c in model.complete_batch(prompts, params)] == \
        [model.complete(p, params).text for p in prompts]


def test_stop_strings_cut_the_answer_and_the_stream(model):
    full = model.chat(MESSAGES, SamplingParams(max_tokens=10)).text
    stop = full.split()[1] if len(full.split()) > 1 else full[2:5]
    pieces = []
    cut = model.chat(MESSAGES, SamplingParams(max_tokens=10, stop=(stop,)), on_token=pieces.append)
    assert cut.text == full[:full.index(stop)]
    assert cut.finish_reason == "stop"
    assert "".join(pieces) == cut.text


def test_sampling_is_seeded(model):
    params = SamplingParams(max_tokens=8, temperature=1.2, top_p=0.95, seed=3)
    a = model.chat(MESSAGES, params).text
    assert model.chat(MESSAGES, params).text == a
    others = {model.chat(MESSAGES, SamplingParams(max_tokens=8, temperature=1.2, seed=s)).text for s in range(4, 9)}
    assert len(others | {a}) > 1


def test_cancel_stops_early(model):
    cancel = threading.Event()
    count = []

    def on_token(piece):
        count.append(piece)
        if len(count) == 2:
            cancel.set()

    completion = model.chat(MESSAGES, SamplingParams(max_tokens=40), on_token=on_token, cancel=cancel)
    assert completion.finish_reason == "cancelled"
    assert completion.completion_tokens < 10


def test_context_overflow_is_a_clear_error(model):
    from stillroom.core.errors import ModelError
    with pytest.raises(ModelError, match="context"):
        model.complete("word " * 1100, SamplingParams(max_tokens=8))


def test_adapter_base_view_shares_weights_and_answers_as_the_base(tmp_path):
    from stillroom.core.student import attach_adapter
    adapter = tiny_adapter_dir(tiny_llama_dir(), tmp_path / "adapter")
    plain = HFModel.from_folder(tiny_llama_dir())
    tuned = HFModel(attach_adapter(HFModel.from_folder(tiny_llama_dir()).model, adapter), plain.tokenizer,
                    name="tuned")
    base = tuned.base_view()
    assert base is not None and base.model is tuned.model
    params = SamplingParams(max_tokens=8)
    assert base.chat(MESSAGES, params).text == plain.chat(MESSAGES, params).text
    assert tuned.chat(MESSAGES, params).text != plain.chat(MESSAGES, params).text
    # the view switched the adapter off only for its own call
    assert tuned.chat_batch([MESSAGES], params)[0].text == tuned.chat(MESSAGES, params).text
    assert plain.base_view() is None
