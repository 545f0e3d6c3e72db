"""The batched llama.cpp path against the single path on the bundled SmolLM2 (greedy: identical)."""
import threading

import pytest

from stillroom.core.backends.base import SamplingParams

pytestmark = pytest.mark.slow

PROMPTS = ["The capital of France is", "Write a short poem about the sea:\n", "def fib(n):",
           "Ticket: my parcel is late\nTeam:", "Once upon a time", "1, 2, 3, 4,"]


@pytest.fixture(scope="module")
def model():
    from stillroom.core.backends.llamacpp import LlamaCppModel
    from stillroom.core.models import bundled_path
    m = LlamaCppModel(bundled_path("smollm2-135m-instruct"), n_ctx=512, parallel=4)
    yield m
    m.close()


def single(model, fn):
    """Run fn on the single path, each prompt decoded from an empty cache.

    (Reusing a cached prefix splits the prompt into different batches; llama.cpp's CPU kernels can
    round those differently in the last bits, which may flip a near-tie in greedy decoding.)"""
    parallel, model.parallel = model.parallel, 1
    try:
        return fn()
    finally:
        model.parallel = parallel


NEAR_TIE = 0.05   # logits this close can swap under last-bit rounding differences


def assert_same_greedy(model, prompt_tokens, single_text, batched_text):
    """Equal texts; or, where llama.cpp's kernels for different batch shapes round differently, a
    divergence only at a near-tie of the single path's two best tokens (checked by teacher forcing)."""
    import numpy as np
    if single_text == batched_text:
        return
    llm = model.llm
    a = llm.tokenize(single_text.encode(), add_bos=False, special=False)
    b = llm.tokenize(batched_text.encode(), add_bos=False, special=False)
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    assert k < min(len(a), len(b)), (single_text, batched_text)
    llm.reset()
    llm.eval(list(prompt_tokens) + a[:k])
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
    margin = abs(float(logits[a[k]]) - float(logits[b[k]]))
    assert margin < NEAR_TIE, (single_text, batched_text, margin)


def fresh(model, call):
    def run(*args):
        model.llm.reset()
        return call(*args)
    return run


def test_batched_greedy_equals_single_per_sequence(model):
    params = [SamplingParams(max_tokens=n, stop=stop)
              for n, stop in zip((24, 8, 24, 16, 24, 12), ((), (), ("\n\n",), ("\n",), (".",), ()))]
    alone = single(model, lambda: [fresh(model, model.complete)(p, sp) for p, sp in zip(PROMPTS, params)])
    streamed = {i: [] for i in range(len(PROMPTS))}
    batched = model.complete_batch(PROMPTS, params, on_token=lambda i, piece: streamed[i].append(piece))
    exact = sum(a.text == b.text for a, b in zip(alone, batched))
    for p, a, b in zip(PROMPTS, alone, batched):
        assert_same_greedy(model, model._prompt_tokens(p), a.text, b.text)
        if a.text == b.text:
            assert a.finish_reason == b.finish_reason
    assert exact >= len(PROMPTS) - 1
    for i, c in enumerate(batched):
        assert "".join(streamed[i]) == c.text
        assert c.completion_tokens <= params[i].max_tokens
        for stop in params[i].stop:
            assert stop not in c.text
    assert batched[1].finish_reason == "length" and batched[1].completion_tokens == 8
    # complete() from several threads at once goes through the same engine, same answers
    results = [None] * len(PROMPTS)

    def worker(i):
        results[i] = model.complete(PROMPTS[i], params[i])
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for p, a, b in zip(PROMPTS, alone, results):
        assert_same_greedy(model, model._prompt_tokens(p), a.text, b.text)


def test_batched_chat_equals_single_chat(model):
    chats = [[{"role": "user", "content": q}] for q in ("What is 2+2?", "Name a colour.", "Say hello.")]
    params = SamplingParams(max_tokens=16)
    alone = single(model, lambda: [fresh(model, model.chat)(c, params) for c in chats])
    model.clear_batch_cache()
    batched = model.chat_batch(chats, params)
    for chat, a, b in zip(chats, alone, batched):
        assert_same_greedy(model, model._chat_tokens(chat, params)[0], a.text, b.text)


HEADER = ("Classify each support ticket by the team that should handle it: billing, shipping or "
          "accounts.\n\nTicket: I was charged twice for my order\nTeam: billing\n\nTicket: the courier "
          "left my box at the wrong address\nTeam: shipping\n\nTicket: I cannot log in after resetting "
          "my password\nTeam: accounts\n\nTicket: the refund has not reached my card yet\nTeam: billing")
TAILS = ["my parcel never arrived", "please change my email address", "why is there a fee on my invoice",
         "the tracking page shows no updates"]


def test_requests_sharing_a_prefix_evaluate_it_once_with_the_same_outputs(model):
    prompts = [f"{HEADER}\n\nTicket: {tail}\nTeam:" for tail in TAILS]
    params = SamplingParams(max_tokens=6, stop=("\n",))
    alone = single(model, lambda: [fresh(model, model.complete)(p, params) for p in prompts])
    sizes = [len(model._prompt_tokens(p)) for p in prompts]
    header = len(model._prompt_tokens(HEADER))

    def evaluated(reuse):
        model.clear_batch_cache()
        model.prefix_cache = reuse
        try:
            out = model.complete_batch(prompts, params)     # all four submitted together
            return out, model._engine.prompt_tokens_evaluated
        finally:
            model.prefix_cache = True
    shared_out, shared_tokens = evaluated(True)
    plain_out, plain_tokens = evaluated(False)
    assert plain_tokens == sum(sizes)
    # The header is evaluated once, not once per request.
    assert shared_tokens <= sum(sizes) - (len(prompts) - 1) * (header - 2)
    for p, a, b, c in zip(prompts, alone, shared_out, plain_out):
        assert_same_greedy(model, model._prompt_tokens(p), a.text, b.text)
        assert b.text == c.text


def test_a_shared_prefix_outlives_the_slots_that_held_it(model):
    # Two requests show the header is shared; then four unrelated prompts take every slot. The
    # header's last copy is kept in a spare sequence, so the next request with it starts from there.
    params = SamplingParams(max_tokens=4, stop=("\n",))
    model.clear_batch_cache()
    model.complete_batch([f"{HEADER}\n\nTicket: {tail}\nTeam:" for tail in TAILS[:2]], params)
    model.complete_batch([f"Translate to French: {word}\nFrench:" for word in ("cat", "dog", "house", "tree")],
                         params)
    prompt = f"{HEADER}\n\nTicket: {TAILS[2]}\nTeam:"
    before = model._engine.prompt_tokens_evaluated
    out = model.complete_batch([prompt], params)[0]
    evaluated = model._engine.prompt_tokens_evaluated - before
    header = len(model._prompt_tokens(HEADER))
    assert evaluated <= len(model._prompt_tokens(prompt)) - header + 2
    alone = single(model, lambda: fresh(model, model.complete)(prompt, params))
    assert_same_greedy(model, model._prompt_tokens(prompt), alone.text, out.text)


def test_label_scoring_runs_on_the_engine_thread_with_the_same_scores(model, monkeypatch):
    # One thread does all of a process's llama.cpp work while the engine runs (one OpenMP team).
    threads = []
    score = model._score

    def spy(prompt, continuations):
        threads.append(threading.current_thread().name)
        return score(prompt, continuations)
    monkeypatch.setattr(model, "_score", spy)
    prompt = f"{HEADER}\n\nTicket: {TAILS[0]}\nTeam:"
    labels = [" billing", " shipping", " accounts"]
    on_engine = model.score_continuations(prompt, labels)
    # Both start from an empty cache: a prefix served from the cache is evaluated in other chunks,
    # which llama.cpp rounds differently.
    model._scorer.n_tokens = 0
    direct = single(model, lambda: model.score_continuations(prompt, labels))
    assert threads == [model._engine.thread.name, threading.current_thread().name]
    assert on_engine == pytest.approx(direct, abs=1e-4)
    # A job's exception is its caller's; the engine carries on.
    with pytest.raises(ZeroDivisionError):
        model._batch_engine().call(lambda: 1 / 0)
    assert model.complete_batch(["1, 2, 3, 4,"], SamplingParams(max_tokens=4))[0].text


def test_sampling_is_seeded_per_sequence(model):
    params = [SamplingParams(temperature=0.9, top_p=0.95, max_tokens=12, seed=s) for s in (1, 2, 1)]
    first = model.complete_batch(["Once upon a time"] * 3, params)
    again = model.complete_batch(["Once upon a time"] * 3, params)
    assert [c.text for c in first] == [c.text for c in again]
    assert first[0].text == first[2].text


def test_cancel_stops_every_sequence(model):
    cancel = threading.Event()
    seen = []

    def on_token(i, piece):
        seen.append(i)
        if len(seen) >= 6:
            cancel.set()
    out = model.complete_batch(PROMPTS, SamplingParams(max_tokens=200), cancel=cancel, on_token=on_token)
    assert all(c.finish_reason == "cancelled" for c in out)
    assert all(c.completion_tokens < 200 for c in out)


def test_a_failure_while_admitting_fails_the_callers_and_the_next_call_recovers(model, monkeypatch):
    from stillroom.core.backends.llamacpp_batch import BatchEngine
    from stillroom.core.errors import ModelError
    model.clear_batch_cache()

    def broken(self, params):
        raise RuntimeError("no sampler")
    with monkeypatch.context() as patch:
        patch.setattr(BatchEngine, "_sampler", broken)
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(
            _raises(lambda: model.complete_batch(PROMPTS[:3], SamplingParams(max_tokens=4)))))
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "a caller hung"
    assert isinstance(outcome[0], ModelError) and "no sampler" in str(outcome[0])
    # The next request gets a fresh engine.
    assert model.complete_batch(["1, 2, 3, 4,"], SamplingParams(max_tokens=4))[0].text


def _raises(call):
    try:
        call()
    except Exception as exc:       # the test inspects it
        return exc
    return None
