"""llama-cpp-python's OpenAI-compatible server on a free loopback port: the benchmarks' helper
(bench/_server.py), shared with the tests rather than copied."""
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))   # last: its module names stay out of the way

from _server import LlamaServer, free_port  # noqa: E402,F401


QA_SEEDS = [("What colour is the sky on a clear day?", "Blue."), ("How many legs does a cat have?", "Four."),
            ("What is the capital of France?", "Paris."), ("What do bees make?", "Honey.")]


def qa_project_on(root: Path, url: str, **teacher):
    """A small `qa` project whose teacher is the bundled chat model behind `url` (model name
    "smollm2"); `teacher` sets further [teacher] keys."""
    from stillroom.core import records
    from stillroom.core.project import Project
    project = Project.create(root, "qa")
    cfg = project.config
    cfg.teacher.model, cfg.teacher.model_name, cfg.teacher.mode = f"openai:{url}", "smollm2", "chat"
    for key, value in teacher.items():
        setattr(cfg.teacher, key, value)
    cfg.generation.max_input_tokens, cfg.generation.max_output_tokens = 24, 16
    cfg.generation.max_attempts_factor = 30
    cfg.evaluation.test_fraction = 0.0
    project.save_config()
    project.save_seeds([records.make_row(q, a) for q, a in QA_SEEDS])
    return Project.open(project.root)
