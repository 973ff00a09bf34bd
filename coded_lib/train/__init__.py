"""Training: data sets and transforms (``data``), the paper's recipes (``presets``), the loop
(``loop``, also ``python -m coded_lib.train``) and atomic, resumable checkpoints (``checkpoint``).

It imports the method (``coded_lib.models``, ``coded_lib.decoders``), never ``analysis`` or ``companion``.
"""
from .loop import (build_model_for, default_run_dir, ensure_run, evaluate, is_finished, load_run, main,
                   make_optimizer, read_metrics, train, train_step)

__all__ = ["train", "ensure_run", "load_run", "default_run_dir", "is_finished", "read_metrics",
           "build_model_for", "make_optimizer", "train_step", "evaluate", "main"]
