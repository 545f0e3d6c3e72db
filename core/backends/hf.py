"""The `hf` backend: a Hugging Face causal LM (the student, with or without its LoRA adapter) as a TextModel.

Decoding goes through `model.generate`; streaming, stop strings and cancellation are hooked in with a
streamer and a stopping criterion, so one code path serves single prompts (chat, the TUI) and left-padded
batches (evaluation). torch and transformers are imported only when a model is used.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import ModelError
from .base import Completion, SamplingParams, TokenCallback
from .streaming import held_back

# End-of-turn markers of common chat templates; any of them present in the vocabulary ends an answer.
END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>",
               "<|end_of_text|>", "<｜end▁of▁sentence｜>")


class HFModel:
    """A loaded causal LM and its tokenizer.

    `adapter_enabled=False` makes a view that answers as the untrained base model while sharing the
    weights of a PEFT model (see `base_view`), so evaluation holds one copy of the student in memory.
    """

    def __init__(self, model, tokenizer, *, name: str = "student", is_base: bool = False,
                 chat_template: str = "", adapter_enabled: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.is_base = is_base
        if chat_template and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = chat_template
        self.supports_chat = bool(getattr(tokenizer, "chat_template", None))
        self.adapter_enabled = adapter_enabled
        self._lock = threading.RLock()     # one decode at a time per loaded model
        self._kept_prompt: Optional[_PromptCache] = None    # score_continuations' last prompt
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.convert_ids_to_tokens(0)
        self.stop_ids = self._stop_ids()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, ref: str, *, project_dir: Optional[Path] = None, adapter: Optional[Path] = None,
             device: str = "auto", dtype=None, name: str = "", chat_template: str = "",
             is_base: bool = False) -> "HFModel":
        """Load a student (any ref `core.student` accepts) with an optional adapter folder."""
        from ..student import load_student
        model, tokenizer = load_student(ref, project_dir=project_dir, adapter=adapter, device=device,
                                        dtype=dtype)
        model.eval()
        return cls(model, tokenizer, name=name or Path(str(ref)).name, chat_template=chat_template,
                   is_base=is_base)

    @classmethod
    def from_folder(cls, folder: Path, *, device: str = "cpu", dtype=None, name: str = "") -> "HFModel":
        """A plain Hugging Face folder (safetensors only), e.g. a merged export."""
        from ..models import check_hf_folder
        folder = Path(folder)
        check_hf_folder(folder)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ModelError(f"transformers is not installed ({exc})", "pip install transformers torch") \
                from None
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                     dtype=dtype or torch.float32, use_safetensors=True)
        model.to(device).eval()
        return cls(model, tokenizer, name=name or folder.name)

    def base_view(self) -> Optional["HFModel"]:
        """The same weights with the adapter switched off, or None when there is no adapter to switch."""
        if not hasattr(self.model, "disable_adapter"):
            return None
        view = HFModel.__new__(HFModel)
        view.__dict__.update(self.__dict__)
        view.adapter_enabled = False
        view.name = f"{self.name} (base)"
        view._lock = self._lock
        return view

    def close(self) -> None:
        self.model = None
        try:
            import gc
            gc.collect()
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ prompts
    def render_chat(self, messages: Sequence[dict]) -> str:
        if not self.supports_chat:
            raise ModelError(f"{self.name}: the model has no chat template; use completion mode "
                             f"(or set student.chat_template)")
        try:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                      add_generation_prompt=True)
        except Exception as exc:   # jinja errors: a template that rejects these roles, etc.
            raise ModelError(f"{self.name}: the chat template failed on these messages: {exc}") from None

    def answer_end(self, messages: Sequence[dict]) -> str:
        """What the chat template writes right after an assistant answer to `messages` (its end-of-turn
        marker), so a scored answer is a whole answer and not the prefix of a longer one."""
        marker = "\u2063answer\u2063"
        try:
            full = self.tokenizer.apply_chat_template(
                list(messages) + [{"role": "assistant", "content": marker}], tokenize=False)
        except Exception:   # a template that rejects this shape: score the bare answer
            return ""
        tail = full[full.rfind(marker) + len(marker):] if marker in full else ""
        return tail.rstrip("\n ")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ protocol
    def chat(self, messages: Sequence[dict], params: SamplingParams, on_token: Optional[TokenCallback] = None,
             cancel: Optional[threading.Event] = None) -> Completion:
        return self._generate([self.render_chat(messages)], params, on_token, cancel, chat=True)[0]

    def complete(self, prompt: str, params: SamplingParams, on_token: Optional[TokenCallback] = None,
                 cancel: Optional[threading.Event] = None) -> Completion:
        return self._generate([prompt], params, on_token, cancel, chat=False)[0]

    def chat_batch(self, conversations: Sequence[Sequence[dict]], params: SamplingParams,
                   cancel: Optional[threading.Event] = None) -> list[Completion]:
        """Answer several conversations at once (left-padded); the same result as one `chat` each."""
        if not conversations:
            return []
        return self._generate([self.render_chat(m) for m in conversations], params, None, cancel, chat=True)

    def complete_batch(self, prompts: Sequence[str], params: SamplingParams,
                       cancel: Optional[threading.Event] = None) -> list[Completion]:
        if not prompts:
            return []
        return self._generate(list(prompts), params, None, cancel, chat=False)

    def score_continuations(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        """The summed log-probability of each continuation after `prompt` (teacher-forced). The prompt
        runs once; its cache is repeated for the continuations, which run together right-padded."""
        import torch
        if self.model is None:
            raise ModelError(f"{self.name}: the model was closed")
        if not continuations:
            return []
        tok = self.tokenizer
        # A rendered chat prompt carries its own BOS; a plain prompt gets the tokenizer's.
        own_bos = bool(tok.bos_token) and prompt.startswith(tok.bos_token)
        prompt_ids = tok(prompt, add_special_tokens=not own_bos)["input_ids"]
        conts = [tok(c, add_special_tokens=False)["input_ids"] or [tok.pad_token_id] for c in continuations]
        width = max(len(c) for c in conts)
        n = len(conts)
        device = self.device
        with self._lock:
            adapter_off = (self.model.disable_adapter() if not self.adapter_enabled
                           and hasattr(self.model, "disable_adapter") else contextlib.nullcontext())
            with torch.inference_mode(), adapter_off:
                cache = self._prompt_cache(prompt_ids)
                first = torch.log_softmax(cache.last_logits[0, -1].float(), dim=-1)
                cache = cache.past
                cache.batch_repeat_interleave(n)
                ids = torch.tensor([c + [tok.pad_token_id] * (width - len(c)) for c in conts], device=device)
                mask = torch.tensor([[1] * (len(prompt_ids) + len(c)) + [0] * (width - len(c)) for c in conts],
                                    device=device)
                out = self.model(input_ids=ids, attention_mask=mask, use_cache=True, **{_cache_arg(self.model): cache})
                rest = torch.log_softmax(out.logits.float(), dim=-1)
        scores = []
        for row, cont in enumerate(conts):
            total = float(first[cont[0]])
            for pos in range(1, len(cont)):
                total += float(rest[row, pos - 1, cont[pos]])
            scores.append(total)
        return scores

    def _prompt_cache(self, prompt_ids: list[int]):
        """The prompt's KV cache and last logits, for the caller to own. Evaluation scores every test row
        after the same few-shot prompt, so the cache of the prompt before is kept and only the part
        that differs runs again (the shared prefix is most of the prompt)."""
        import copy

        import torch
        kept = self._kept_prompt
        common = 0
        if kept is not None and kept.adapter == self.adapter_enabled:
            limit = min(len(kept.ids), len(prompt_ids) - 1)        # run at least one token
            while common < limit and kept.ids[common] == prompt_ids[common]:
                common += 1
        if common:
            past = copy.deepcopy(kept.past)
            if common < len(kept.ids):
                past.crop(common - len(kept.ids))        # a negative count drops that many from the end
            out = self.model(input_ids=torch.tensor([prompt_ids[common:]], device=self.device),
                             use_cache=True, **{_cache_arg(self.model): past})
        else:
            out = self.model(input_ids=torch.tensor([prompt_ids], device=self.device), use_cache=True)
        self._kept_prompt = _PromptCache(list(prompt_ids), copy.deepcopy(out.past_key_values), None,
                                         self.adapter_enabled)
        return _PromptCache(list(prompt_ids), out.past_key_values, out.logits, self.adapter_enabled)

    # ------------------------------------------------------------------ decoding
    def _stop_ids(self) -> list[int]:
        ids = set()
        tok = self.tokenizer
        if tok.eos_token_id is not None:
            ids.add(int(tok.eos_token_id))
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif isinstance(gen_eos, (list, tuple)):
            ids.update(int(i) for i in gen_eos)
        vocab = tok.get_vocab()
        for marker in END_OF_TURN:
            if marker in vocab:
                ids.add(int(vocab[marker]))
        return sorted(ids)

    def _generate(self, prompts: list[str], params: SamplingParams, on_token, cancel, *,
                  chat: bool) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        if self.model is None:
            raise ModelError(f"{self.name}: the model was closed")
        tok = self.tokenizer
        start = time.perf_counter()
        with self._lock:
            previous_side = tok.padding_side
            tok.padding_side = "left"
            try:
                # A chat template writes its own BOS; a plain completion prompt gets the tokenizer's.
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=not chat)
            finally:
                tok.padding_side = previous_side
            input_ids = enc["input_ids"].to(self.device)
            attention = enc["attention_mask"].to(self.device)
            prompt_len = input_ids.shape[1]
            prompt_tokens = attention.sum(dim=1).tolist()
            limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
            if limit and prompt_len + params.max_tokens > limit:
                raise ModelError(f"{self.name}: prompt of {prompt_len} tokens plus {params.max_tokens} new "
                                 f"tokens exceeds the model's context of {limit}")
            stops = tuple(s for s in params.stop if s)
            timing = _Timing(start)
            answers = _AnswerSet(params.answers)
            criteria = StoppingCriteriaList([_stop_check(tok, prompt_len, stops, cancel, timing, answers)])
            streamer = _Streamer(tok, on_token, stops, timing) if on_token is not None else None
            sample = params.temperature > 0
            config = GenerationConfig(
                max_new_tokens=params.max_tokens, do_sample=sample,
                temperature=params.temperature if sample else None,
                top_p=params.top_p if sample and params.top_p < 1 else None, top_k=None,
                eos_token_id=self.stop_ids or None, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id)
            if sample and params.seed is not None:
                torch.manual_seed(params.seed)
            adapter_off = (self.model.disable_adapter() if not self.adapter_enabled
                           and hasattr(self.model, "disable_adapter") else contextlib.nullcontext())
            with torch.inference_mode(), adapter_off:
                out = self.model.generate(input_ids=input_ids, attention_mask=attention,
                                          generation_config=config, stopping_criteria=criteria,
                                          streamer=streamer)
            if streamer is not None:
                streamer.end()
        seconds = time.perf_counter() - start
        results = []
        cancelled = cancel is not None and cancel.is_set()
        for row, generated in enumerate(out[:, prompt_len:].tolist()):
            ids, hit_eos = [], False
            for token in generated:
                if token in self.stop_ids:
                    hit_eos = True
                    break
                ids.append(token)
            text = tok.decode(ids, skip_special_tokens=True)
            cut = _cut_at_stop(text, stops)
            if answers and cut is None:
                cut = answers.end(text)
            finish = "stop" if (hit_eos or cut is not None) else "length"
            if cancelled and not hit_eos and cut is None and len(ids) < params.max_tokens:
                finish = "cancelled"
            if cut is not None:
                text = text[:cut]
                ids = ids[:max(1, len(tok(text, add_special_tokens=False)["input_ids"]))]
            results.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(prompt_tokens[row]),
                                      completion_tokens=len(ids), seconds=seconds,
                                      first_token_seconds=timing.first))
        return results


@dataclass
class _PromptCache:
    ids: list
    past: object                 # the model's KV cache after `ids`
    last_logits: object          # logits of the run that built it (None for the kept copy)
    adapter: bool                # whether the adapter was on: a cache belongs to one set of weights


def _cache_arg(model) -> str:
    """The forward argument that takes a KV cache: `cache` in newer transformers, else past_key_values."""
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class _AnswerSet:
    """A closed set of answers (labels) and where an answer drawn from it is over: at a complete answer
    that no longer answer extends, or at the end of the first line with text (a label is one line), so
    a model that rambles after its answer stops early."""

    def __init__(self, answers: Sequence[str]):
        self.answers = {a.strip().lower() for a in answers if a.strip()}

    def __bool__(self) -> bool:
        return bool(self.answers)

    def end(self, text: str) -> Optional[int]:
        """Where the answer in `text` ends, or None while it may go on."""
        start = len(text) - len(text.lstrip())
        newline = text.find("\n", start)
        if start < len(text) and newline >= 0:
            return newline
        body = text.strip().lower()
        if body in self.answers and not any(a != body and a.startswith(body) for a in self.answers):
            return len(text.rstrip())
        return None


def _cut_at_stop(text: str, stops: Sequence[str]) -> Optional[int]:
    cuts = [text.find(s) for s in stops if s and s in text]
    return min(cuts) if cuts else None


class _Timing:
    def __init__(self, start: float):
        self.start = start
        self.first: Optional[float] = None

    def mark(self) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start


_STOP_CLASS = None


def _stop_check(tokenizer, prompt_len: int, stops: tuple, cancel, timing: "_Timing",
                answers: Optional[_AnswerSet] = None):
    """A transformers StoppingCriteria (built on first use, so importing this module stays cheap)."""
    global _STOP_CLASS
    if _STOP_CLASS is None:
        from transformers import StoppingCriteria

        class StopCheck(StoppingCriteria):
            """Per-row stop: a stop string in the decoded answer, or the cancel event (stops every row)."""

            def __init__(self, tokenizer, prompt_len, stops, cancel, timing, answers):
                self.answers = answers
                self.tokenizer = tokenizer
                self.prompt_len = prompt_len
                self.stops = stops
                self.cancel = cancel
                self.timing = timing

            def __call__(self, input_ids, scores, **kwargs):
                import torch
                self.timing.mark()
                batch = input_ids.shape[0]
                if self.cancel is not None and self.cancel.is_set():
                    return torch.ones(batch, dtype=torch.bool, device=input_ids.device)
                done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
                if self.stops:
                    longest = max(len(s) for s in self.stops)
                    for row in range(batch):
                        tail = input_ids[row, self.prompt_len:][-(longest + 8):].tolist()
                        text = self.tokenizer.decode(tail, skip_special_tokens=True)
                        if any(s in text for s in self.stops):
                            done[row] = True
                if self.answers:
                    for row in range(batch):
                        if not done[row]:
                            answer = input_ids[row, self.prompt_len:].tolist()
                            text = self.tokenizer.decode(answer, skip_special_tokens=True)
                            done[row] = self.answers.end(text) is not None
                return done

        _STOP_CLASS = StopCheck
    return _STOP_CLASS(tokenizer, prompt_len, stops, cancel, timing, answers)


class _Streamer:
    """Decodes a single answer incrementally and hands out the new text, holding back a possible stop."""

    def __init__(self, tokenizer, on_token: Callable[[str], None], stops: tuple, timing: _Timing):
        self.tokenizer = tokenizer
        self.on_token = on_token
        self.stops = stops
        self.timing = timing
        self.ids: list[int] = []
        self.sent = 0
        self.skipped_prompt = False
        self.stopped = False

    def put(self, value) -> None:
        if not self.skipped_prompt:        # the first call carries the prompt
            self.skipped_prompt = True
            return
        if self.stopped:
            return
        self.ids.extend(value.reshape(-1).tolist())
        self._flush(final=False)

    def end(self) -> None:
        if not self.stopped:
            self._flush(final=True)

    def _flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = _cut_at_stop(text, self.stops)
        if cut is not None:
            text, final, self.stopped = text[:cut], True, True
        if not final:
            if text.endswith("\ufffd"):          # half a multi-byte character: wait for the rest
                return
            safe = len(text) - held_back(text, self.stops)
            text = text[:max(safe, self.sent)]
        if len(text) > self.sent:
            self.timing.mark()
            self.on_token(text[self.sent:])
            self.sent = len(text)

