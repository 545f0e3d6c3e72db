"""Stillroom's engine: projects, example rows, models, generation, training, evaluation, export.

Nothing here imports textual or rich; heavy libraries (torch, transformers, peft, llama_cpp)
are imported inside the functions that use them.
"""
