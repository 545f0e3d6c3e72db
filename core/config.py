"""stillroom.toml as typed dataclasses: defaults, help text, parsing with precise errors, rendering.

Every field carries its help text in `metadata["help"]`; `render_toml` writes every setting with its
help as a comment, so a new project's file documents itself.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError
from .tasks import KINDS, task_kind

TASK_TYPES = tuple(KINDS)
BASELINES = ("few-shot", "scored", "seed-only")


def setting(default: Any, help: str, *, choices: tuple = (), minimum: float | None = None,
            exclusive_min: bool = False):
    meta = {"help": help, "choices": choices, "minimum": minimum, "exclusive_min": exclusive_min}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TaskConfig:
    name: str = setting("my-task", "Short name shown in the header.")
    description: str = setting("", "What the model must do, in plain words. The teacher reads this.")
    type: str = setting("classification", "Task type: classification, extraction, qa or generation.",
                        choices=TASK_TYPES)
    labels: list = setting([], "Classification only: the allowed labels (answers must be one of these).")
    json_schema: str = setting("", "Extraction only: a JSON Schema (as a JSON string) the answer must match.")
    system_prompt: str = setting("", "System message put in front of every training and evaluation row.")
    input_name: str = setting("Text", "What an input is called in few-shot prompts (e.g. Ticket, Question).")
    output_name: str = setting("Label", "What an answer is called in few-shot prompts (e.g. Category, Answer).")


@dataclass
class TeacherConfig:
    model: str = setting("bundled:gemma-3-270m",
                         "bundled:gemma-3-270m, bundled:smollm2-135m-instruct, a .gguf path, or "
                         "openai:<base-url> for an OpenAI-compatible server.")
    mode: str = setting("auto", "auto, chat or completion. auto: chat when the model has a chat template "
                        "and is not a base model.", choices=("auto", "chat", "completion"))
    model_name: str = setting("", "openai only: the model name the server expects.")
    api_key_env: str = setting("", "openai only: NAME of the environment variable holding the API key "
                               "(the key itself is never stored).")
    n_ctx: int = setting(2048, "llama.cpp context size in tokens.", minimum=128)
    n_threads: int = setting(0, "llama.cpp CPU threads; 0 = all cores.", minimum=0)
    n_gpu_layers: int = setting(0, "llama.cpp layers offloaded to the GPU; -1 = all.", minimum=-1)
    cpu_repack: str = setting("auto", "llama.cpp weight repacking into extra CPU buffer types, for every GGUF "
                              "Stillroom loads (teacher, chat, export check): auto (off on Intel AMX CPUs, "
                              "where it crashes on Q4_K weights; on elsewhere), on or off.",
                              choices=("auto", "on", "off"))
    max_in_flight: int = setting(0, "Candidates generated at once (batched llama.cpp decoding or "
                                 "concurrent server requests). 0 = auto: up to 8 for a llama.cpp teacher, "
                                 "fewer when its KV cache would pass 2 GiB or an 8th of the RAM; 1 for a "
                                 "server (raise it for one that batches, as vLLM or llama-server -np N).",
                                 minimum=0)
    timeout: float = setting(120.0, "openai only: seconds before a request is abandoned and retried.",
                             minimum=0, exclusive_min=True)
    servers: list = setting([], "openai only: more base URLs (http://host:port/v1) serving the same model; "
                            "requests go round-robin over teacher.model's URL and these.")
    max_retries: int = setting(5, "openai only: retries (with exponential backoff) after a timeout, a "
                               "refused connection, 429 or 5xx.", minimum=0)


@dataclass
class StudentConfig:
    model: str = setting("bundled:smollm2-135m-instruct",
                         "bundled:smollm2-135m-instruct, a .gguf path, or a Hugging Face model folder.")
    chat_template: str = setting("", "A Jinja chat template to use when the model has none.")
    trust_remote_code: bool = setting(False, "Run code shipped with the model folder. Off unless you trust it.")


@dataclass
class GenerationConfig:
    temperature: float = setting(0.9, "Sampling temperature for writing new inputs.", minimum=0)
    label_temperature: float = setting(0.0, "Temperature for the teacher's answers (0 = greedy).", minimum=0)
    top_p: float = setting(0.95, "Nucleus sampling.", minimum=0, exclusive_min=True)
    max_input_tokens: int = setting(96, "Longest new input the teacher may write, in tokens.", minimum=1)
    max_output_tokens: int = setting(128, "Longest answer the teacher may write, in tokens.", minimum=1)
    few_shot: int = setting(6, "Seed examples shown to the teacher per candidate (rotated).", minimum=1)
    shot_group: int = setting(8, "Consecutive candidates that share all but their last few-shot example, "
                              "so a batched teacher evaluates that common prompt prefix once (1 = a "
                              "fresh sample per candidate).", minimum=1)
    topics: list = setting([], "Optional topics or personas, rotated into the prompt per shot group.")
    min_chars: int = setting(8, "Shortest accepted input, in characters.", minimum=1)
    max_chars: int = setting(600, "Longest accepted input, in characters.", minimum=1)
    near_dup_threshold: float = setting(0.8, "Reject an input whose character 3-gram Jaccard similarity "
                                        "to a seed, test or earlier row reaches this.", minimum=0)
    label_shots: int = setting(24, "Classification with a base teacher: seed examples in the fixed prompt "
                               "used to score each label (labels are scored, not sampled).", minimum=1)
    agreement: bool = setting(True, "Classification: compare the teacher's label for the new input with "
                              "the label it was written for (false: never compare, as relabel does).")
    disagreement: str = setting("reject", "Classification: a candidate whose teacher label differs from the "
                                "label it was written for is rejected (reject), or kept with the teacher's "
                                "label (relabel; meta.intended_label keeps the other; the next candidates' "
                                "labels, and rejecting a relabel into a label already ahead, keep the set "
                                "balanced). reject by default: on SST-2 with the bundled teacher, whose "
                                "disagreements all ran one way, balanced relabel kept as many candidates "
                                "(24 of 43) and relabelled rows are the ones the teacher is least sure of.",
                                choices=("reject", "relabel"))
    teacher_logprobs: int = setting(0, "Keep the teacher's k most likely tokens and their log-probabilities "
                                    "for each answer token (data/teacher_topk.jsonl), for training.objective "
                                    "= logits; 0 = off. llama.cpp teachers only.", minimum=0)
    seed: int = setting(0, "Random seed for label choice, few-shot rotation and sampling.")
    max_attempts_factor: int = setting(20, "Give up after target x this many candidates.", minimum=1)


@dataclass
class TrainingConfig:
    method: str = setting("lora", "lora or full.", choices=("lora", "full"))
    include_seeds: bool = setting(True, "Train on the seed examples as well as the kept synthetic rows.")
    epochs: float = setting(3.0, "Passes over the training rows.", minimum=0, exclusive_min=True)
    max_steps: int = setting(0, "Stop after this many optimizer steps; 0 = use epochs.", minimum=0)
    learning_rate: float = setting(2e-4, "Peak learning rate.", minimum=0, exclusive_min=True)
    batch_size: int = setting(8, "Rows per device step.", minimum=1)
    grad_accum: int = setting(1, "Gradient accumulation steps.", minimum=1)
    max_length: int = setting(256, "Longest training sequence in tokens; longer rows are truncated.",
                              minimum=16)
    warmup_ratio: float = setting(0.05, "Share of steps spent warming up the learning rate.", minimum=0)
    weight_decay: float = setting(0.0, "AdamW weight decay.", minimum=0)
    lora_rank: int = setting(16, "LoRA rank.", minimum=1)
    lora_alpha: int = setting(32, "LoRA alpha.", minimum=1)
    lora_dropout: float = setting(0.05, "LoRA dropout.", minimum=0)
    target_modules: list = setting([], "LoRA target modules; empty = the attention and MLP projections "
                                   "of the architecture.")
    validation_fraction: float = setting(0.1, "Share of training rows held out for validation loss.",
                                         minimum=0)
    logging_steps: int = setting(5, "Log loss every this many steps.", minimum=1)
    report_to: list = setting([], "Experiment trackers that also receive the training metrics, through "
                              "Trainer's integrations: tensorboard (event files in runs/<id>/tensorboard), "
                              "wandb, mlflow or trackio (each reads its usual environment variables). Empty "
                              "= nothing is sent anywhere; runs/<id>/metrics.jsonl is written either way. "
                              "Install with pip install 'stillroom[tracking]'.",
                              choices=("tensorboard", "wandb", "mlflow", "trackio"))
    eval_steps: int = setting(20, "Validation loss every this many steps.", minimum=1)
    save_steps: int = setting(20, "Checkpoint every this many steps.", minimum=1)
    device: str = setting("auto", "auto, cuda, mps or cpu.", choices=("auto", "cuda", "mps", "cpu"))
    precision: str = setting("auto", "auto: bf16 on a CUDA GPU that has it, and on a CPU that computes bf16 "
                             "natively (Intel AMX or AVX512-BF16, read from the CPU's feature flags); fp32 "
                             "elsewhere, where bf16 is emulated and slower. Or fp32, bf16 or fp16.",
                             choices=("auto", "fp32", "bf16", "fp16"))
    seed: int = setting(0, "Random seed for data order, split and initialisation.")
    batching: str = setting("pack", "pack: each batch's rows run as one padding-free sequence (attention "
                            "stays inside each row); group: rows of similar length are padded together; "
                            "pad: plain padding.", choices=("pack", "group", "pad"))
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: less memory "
                                           "for big students, about 30% slower.")
    save_total_limit: int = setting(2, "Checkpoints kept per run (older ones are deleted); at least 1.",
                                    minimum=1)
    objective: str = setting("sft", "What the student learns from each row. sft: the teacher's answer "
                             "(cross-entropy on its tokens). soft-labels (classification): also the "
                             "teacher's label distribution (scores.label_probs), matched by the student's "
                             "probability of each whole label, so teacher and student may have different "
                             "tokenizers. logits: the teacher's top-k token log-probabilities (same "
                             "tokenizer only).", choices=("sft", "soft-labels", "logits"))
    distill_weight: float = setting(0.2, "soft-labels and logits: share of the loss taken by the teacher's "
                                    "distribution (the rest is the answer's cross-entropy); 0 to 1. At 0.5 a "
                                    "student of a flat, 8-label teacher stopped answering with labels (ATIS).",
                                    minimum=0)
    distill_temperature: float = setting(2.0, "soft-labels and logits: temperature that softens both the "
                                         "teacher's and the student's distribution before they are compared.",
                                         minimum=0, exclusive_min=True)


@dataclass
class EvaluationConfig:
    test_fraction: float = setting(0.25, "Without a test.jsonl: share of seeds held out for testing "
                                   "(never used for training or few-shot prompts).", minimum=0)
    max_examples: int = setting(0, "Evaluate at most this many test rows; 0 = all.", minimum=0)
    max_tokens: int = setting(64, "Longest answer per model, in tokens.", minimum=1)
    batch_size: int = setting(8, "Student rows decoded at once.", minimum=1)
    judge: bool = setting(False, "Also let the teacher rate each student answer against the reference.")
    bootstrap: int = setting(1000, "Bootstrap resamples for the gap-closed confidence interval.", minimum=1)
    seed: int = setting(0, "Random seed for the bootstrap.")
    headline: str = setting("auto", "Metric the gap closed is computed on. auto: accuracy (classification), "
                            "field_f1 (extraction), token_f1 (qa), rouge_l (generation); or exact_match, "
                            "chrf, json_valid, judge.",
                            choices=("auto", "accuracy", "field_f1", "json_valid", "exact_match", "token_f1",
                                     "rouge_l", "chrf", "judge"))
    device: str = setting("auto", "Device for the student during evaluation, chat and export checks: "
                          "auto, cuda, mps or cpu.", choices=("auto", "cuda", "mps", "cpu"))
    baselines: list = setting(["few-shot", "scored", "seed-only"],
                              "Baselines evaluated beside the zero-shot base student: few-shot (the base "
                              "student shown evaluation.few_shot seeds), scored (classification: the base "
                              "student's most likely label), seed-only (the student trained on the seeds "
                              "alone with the run's steps and settings; trained once per seed set).",
                              choices=BASELINES)
    few_shot: int = setting(8, "Seeds shown to the base student in the few-shot and scored baselines "
                            "(never test rows).", minimum=1)
    reuse_answers: bool = setting(True, "Reuse the teacher's and the base student's answers (zero-shot, "
                                  "few-shot, scored) from an earlier evaluation with the same test rows, "
                                  "models and settings (runs/_answers/); false asks them again each time.")


@dataclass
class ImproveConfig:
    probe: int = setting(48, "Fresh inputs the teacher writes and labels each round to find where the tuned "
                         "student still disagrees with it (never test rows; kept apart from training rows).",
                         minimum=1)
    rows: int = setting(48, "Training rows generated each round around the student's mistakes.", minimum=1)
    retrain: str = setting("fresh", "After targeting: fresh (a new adapter on all kept rows) or continue "
                           "(train the round's starting adapter further on all kept rows).",
                           choices=("fresh", "continue"))
    disagree_below: float = setting(0.5, "Extraction, QA and generation: a probe answer whose headline score "
                                    "against the teacher's answer is below this is a disagreement.", minimum=0)


@dataclass
class ProjectConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    improve: ImproveConfig = field(default_factory=ImproveConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in dataclasses.fields(ProjectConfig)}
_SECTION_CLASSES = {name: cls for name, cls in get_type_hints(ProjectConfig).items()}
SECTION_HELP = {
    "task": "The task the student must learn.",
    "teacher": "The large model that writes training rows.",
    "student": "The small model that is fine-tuned.",
    "generation": "How the teacher writes rows.",
    "training": "How the student is fine-tuned.",
    "evaluation": "How teacher, base student and tuned student are measured.",
    "improve": "The closed loop (stillroom improve): probe the student, target its mistakes, retrain.",
}


def _line_of(text: str, section: str | None, key: str | None) -> int | None:
    """The 1-based line of `key` inside `[section]` (or of the section header), for error messages."""
    lines = text.splitlines()
    current = None
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        header = re.match(r"^\[([^\]]+)\]", stripped)
        if header:
            current = header.group(1).strip()
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf'^"?{re.escape(key)}"?\s*=', stripped):
            return number
    return None


def _type_name(tp) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(tp, str(tp))


def _check_value(section: str, name: str, value: Any, tp, meta: dict, where) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, tp) and not (tp in (int, float) and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{where(section, name)}: {section}.{name} must be {_type_name(tp)}, "
                          f"got {type(value).__name__} {value!r}")
    if tp is list and name in ("labels", "topics", "target_modules", "servers", "baselines"):
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{where(section, name)}: {section}.{name} must be a list of "
                                  f"non-empty strings, got {item!r}")
    choices = meta.get("choices")
    if choices and tp is list:
        for item in value:
            if item not in choices:
                raise ConfigError(f"{where(section, name)}: {section}.{name} may hold "
                                  f"{', '.join(choices)}, got {item!r}")
    elif choices and value not in choices:
        raise ConfigError(f"{where(section, name)}: {section}.{name} must be one of "
                          f"{', '.join(choices)}, got {value!r}")
    minimum = meta.get("minimum")
    if minimum is not None and tp in (int, float):
        bad = value <= minimum if meta.get("exclusive_min") else value < minimum
        if bad:
            rel = "greater than" if meta.get("exclusive_min") else "at least"
            raise ConfigError(f"{where(section, name)}: {section}.{name} must be {rel} {minimum}, "
                              f"got {value!r}")
    return value


def parse_config(text: str, path: Path | str = "stillroom.toml") -> ProjectConfig:
    """Parse and validate TOML text. Every error names the file, the line and the key."""
    path = str(path)

    def where(section, key=None):
        # The key's own line, else its section's header, else just the file.
        line = _line_of(text, section, key) or (key and _line_of(text, section, None))
        return f"{path}:{line}" if line else path

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        loc = f"{path}:{match.group(1)}" if match else path
        raise ConfigError(f"{loc}: invalid TOML: {exc}") from None

    sections = {}
    for section_name, value in raw.items():
        if section_name not in _SECTION_CLASSES:
            raise ConfigError(f"{where(section_name)}: unknown section [{section_name}]; expected one of "
                              f"{', '.join('[' + s + ']' for s in _SECTION_CLASSES)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {section_name} must be a [{section_name}] table")
        sections[section_name] = value

    built = {}
    for section_name, cls in _SECTION_CLASSES.items():
        values = sections.get(section_name, {})
        hints = get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{where(section_name, key)}: unknown key {section_name}.{key}; "
                                  f"expected one of {', '.join(known)}")
            kwargs[key] = _check_value(section_name, key, value, hints[key], known[key].metadata, where)
        built[section_name] = cls(**kwargs)
    config = ProjectConfig(**built)
    _check_consistency(config, where)
    return config


def _check_consistency(config: ProjectConfig, where) -> None:
    task = config.task
    task_kind(task).check_config(where)
    if task.json_schema:
        try:
            schema = json.loads(task.json_schema)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where('task', 'json_schema')}: task.json_schema is not valid JSON: "
                              f"{exc.msg} at character {exc.pos}") from None
        if not isinstance(schema, dict):
            raise ConfigError(f"{where('task', 'json_schema')}: task.json_schema must be a JSON object")
    gen = config.generation
    if gen.min_chars > gen.max_chars:
        raise ConfigError(f"{where('generation', 'min_chars')}: generation.min_chars ({gen.min_chars}) "
                          f"is larger than generation.max_chars ({gen.max_chars})")
    if not 0 <= gen.near_dup_threshold <= 1:
        raise ConfigError(f"{where('generation', 'near_dup_threshold')}: generation.near_dup_threshold "
                          f"must be between 0 and 1, got {gen.near_dup_threshold}")
    if not 0 <= config.training.distill_weight <= 1:
        raise ConfigError(f"{where('training', 'distill_weight')}: training.distill_weight must be between 0 "
                          f"and 1, got {config.training.distill_weight}")
    if config.training.objective == "soft-labels" and not task_kind(task).label_set:
        raise ConfigError(f"{where('training', 'objective')}: training.objective = \"soft-labels\" needs a "
                          f"classification task with task.labels; this task is {task.type}")
    for section, key, value in (("training", "validation_fraction", config.training.validation_fraction),
                                ("evaluation", "test_fraction", config.evaluation.test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"{where(section, key)}: {section}.{key} must be at least 0 and below 1, "
                              f"got {value}")


def load_config(path: Path) -> ProjectConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; is this a Stillroom project? "
                          f"(create one with: stillroom init {path.parent})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse_config(text, path)


# ---------------------------------------------------------------- rendering

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "\n" in value and "'''" not in value:
            return "'''\n" + value + ("'''" if value.endswith("\n") else "\n'''")
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def render_toml(config: ProjectConfig) -> str:
    """The whole config with every key present and explained by a comment."""
    out = ["# Stillroom project settings. Every key is optional; the values shown are in effect.", ""]
    for section_field in dataclasses.fields(ProjectConfig):
        name = section_field.name
        out.append(f"# {SECTION_HELP[name]}")
        out.append(f"[{name}]")
        section = getattr(config, name)
        for f in dataclasses.fields(section):
            out.append(f"# {f.metadata['help']}")
            out.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        out.append("")
    return "\n".join(out)
