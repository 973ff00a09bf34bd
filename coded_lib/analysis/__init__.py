"""Analyses behind the paper's tables and figures; the notebooks only call these.

Each takes a model and a DataLoader (or tensors) and returns numbers or pandas DataFrames. It imports
the method; only ``sweep`` reaches into ``coded_lib.train`` (at call time), never ``companion``.
"""
from .activations import subnn_output_distribution
from .binary import (BinaryReport, binary_classifiers, binary_metrics, binary_scores, logit_auc,
                     masked_vs_extracted, neg_ratio_for)
from .cost import (coded_flops_overhead, cost_table, count_multiply_adds, fvcore_flops,
                   peak_training_memory, training_throughput)
from .early import agreement_table, early_accuracy
from .inference import collect, eval_mode
from .metrics import best_f1_threshold, f1_score, precision_recall
from .removal import removal_curve, removal_curves, removal_gaps, removal_pairs, removal_table
from .sweep import read_final_metrics, sweep

__all__ = [
    "collect", "eval_mode",
    "removal_curve", "removal_curves", "removal_gaps", "removal_pairs", "removal_table",
    "BinaryReport", "binary_scores", "binary_metrics", "binary_classifiers", "masked_vs_extracted", "neg_ratio_for",
    "logit_auc",
    "best_f1_threshold", "precision_recall", "f1_score",
    "subnn_output_distribution",
    "early_accuracy", "agreement_table",
    "count_multiply_adds", "fvcore_flops", "coded_flops_overhead", "training_throughput",
    "peak_training_memory", "cost_table",
    "sweep", "read_final_metrics",
]
