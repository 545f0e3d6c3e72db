"""Text-model backends behind one protocol (see base.TextModel)."""
from .base import (AnswersBatches, BoundsConcurrency, Completion, SamplingParams, ScoresContinuations, TextModel,
                   choose_mode, concurrency_limit, supports)

__all__ = ["AnswersBatches", "BoundsConcurrency", "Completion", "SamplingParams", "ScoresContinuations",
           "TextModel", "choose_mode", "concurrency_limit", "load_teacher", "supports"]


def load_teacher(project, on_event=None):
    """The project's teacher as a TextModel (loaded once per run)."""
    from ..models import resolve
    cfg = project.config.teacher
    ref = resolve(cfg.model, project_dir=project.root)
    if ref.kind == "openai":
        from .openai import OpenAIModel
        return OpenAIModel(ref, cfg)
    if ref.kind == "gguf":
        from .llamacpp import LlamaCppModel
        return LlamaCppModel(ref.path, name=ref.name, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads,
                             n_gpu_layers=cfg.n_gpu_layers, is_base=ref.is_base,
                             parallel=cfg.max_in_flight, cpu_repack=cfg.cpu_repack)
    from ..errors import ModelError
    raise ModelError(f"teacher.model = {cfg.model!r}: a Hugging Face folder cannot be a teacher yet; "
                     f"use a .gguf file or an openai: server")
