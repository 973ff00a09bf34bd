"""Ablation sweeps (F-mu, F-pdrop, T-exp, ...): train (or reuse) one run per value, read its metrics."""
from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd


def read_final_metrics(run_dir) -> dict:
    """The last row of ``run_dir/metrics.csv`` (columns epoch, val_acc, code_loss, early_acc_1..L)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise ValueError(f"{path} does not exist: is {run_dir} a finished run folder?")
    metrics = pd.read_csv(path)
    if metrics.empty:
        raise ValueError(f"{path} has no rows")
    return metrics.iloc[-1].to_dict()


def sweep(preset: str, param: str, values, base_overrides: dict | None = None) -> pd.DataFrame:
    """One run per value of ``param`` via ``coded_lib.train.ensure_run(preset, **base_overrides,
    param=value)`` (trained only if missing), then the final row of each run's metrics.csv.

    Returns one row per value: ``param`` (the value), run_dir, and the metrics columns
    (epoch, val_acc, code_loss, early_acc_1..L; early columns absent for a plain model are NaN).
    """
    base_overrides = dict(base_overrides or {})
    if param in base_overrides:
        raise ValueError(f"{param!r} is both the swept parameter and in base_overrides")
    train = importlib.import_module("coded_lib.train")  # at call time: training pulls in the data stack
    rows = []
    for value in values:
        run_dir = train.ensure_run(preset, **{**base_overrides, param: value})
        rows.append({param: value, "run_dir": str(run_dir), **read_final_metrics(run_dir)})
    return pd.DataFrame(rows)
