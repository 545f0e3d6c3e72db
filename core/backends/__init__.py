"""Text-model backends behind one protocol (see base.TextModel)."""
from .base import (AnswersBatches, BoundsConcurrency, Completion, SamplingParams, ScoresContinuations, TextModel,
                   choose_mode, concurrency_limit, supports)

__all__ = ["AnswersBatches", "BoundsConcurrency", "Completion", "SamplingParams", "ScoresContinuations",
           "TextModel", "choose_mode", "concurrency_limit", "load_teacher", "supports"]


def load_teacher(project, on_event=None, *, batched: bool = False):
    """The project's teacher as a TextModel (loaded once per run). It carries `cache_identity`, what it
    is, so an evaluation given this teacher may reuse its earlier answers (core.answer_cache).

    `batched`: the teacher will be asked for many candidates at once (generation), so with
    teacher.max_in_flight = 0 (auto) a llama.cpp teacher gets the batched engine, sized to the model
    and the machine; chat and evaluation ask one thing at a time and keep the single path."""
    from ..answer_cache import teacher_identity
    from ..models import resolve
    cfg = project.config.teacher
    ref = resolve(cfg.model, project_dir=project.root)
    if ref.kind == "openai":
        from .openai import OpenAIModel
        model = OpenAIModel(ref, cfg)
    elif ref.kind == "gguf":
        from .llamacpp import LlamaCppModel
        model = LlamaCppModel(ref.path, name=ref.name, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads,
                              n_gpu_layers=cfg.n_gpu_layers, is_base=ref.is_base,
                              parallel=cfg.max_in_flight or (0 if batched else 1), cpu_repack=cfg.cpu_repack)
    else:
        from ..errors import ModelError
        raise ModelError(f"teacher.model = {cfg.model!r}: a Hugging Face folder cannot be a teacher yet; "
                         f"use a .gguf file or an openai: server")
    model.cache_identity = teacher_identity(project, ref)
    return model
