"""Benchmarks of the Coded ResNeXt companion (SPEC §5).

    python benchmarks/run.py                   # everything, about 5-6 minutes on 2 busy CPU cores
    python benchmarks/run.py --device cuda     # items 1-2 on a GPU as well
    python benchmarks/run.py --schemes cifar   # without generating the ImageNet schemes (~30 s)
    python benchmarks/run.py --device cuda --only gpu --rows 512   # issue 13's GPU table, rows with "512"

1. Training step (forward, Eq. 6 loss with the coding loss, backward, SGD step) of Coded ResNeXt
   vs plain ResNeXt of the same widths: time and peak memory. Targets on CPU: ratios <= 1.10, 1.15.
2. The same with the naive coded block (paths materialised, benchmarks/naive_block.py): what
   computing the energies in Gram form saves.
3. The extracted binary classifier vs the full model: parameters, multiply-adds, latency.
4. Coding-scheme generation (Algorithm 1) for the paper's CIFAR-100 and ImageNet configurations.
5. Training throughput of the default preset (Fashion-MNIST, coded_resnext_mini).
6-9. Issue 13 (benchmarks/gpu_loop.py): operators per training step (coded / plain <= 1.3; eager, and
   compiled by inductor: about 2 minutes of compiling), the
   training loop against its bare steps (< 5 % more on CPU), XLA compilations per step (PJRT CPU),
   and with --device cuda the GPU table (coded / plain <= 1.05 at batch 512, <= 1.10 at 128, NCHW and
   channels-last; compiled <= 1.03; memory <= 1.10), GPU targets listed as not yet measured otherwise.

Timings are taken in one process, the compared models interleaved (A, B, C, A, B, C, ...), so that
a change in the load of the machine hits all of them alike; a time is the median over rounds and a
ratio the median of the per-round ratios. On a CPU shared with other busy processes, torch runs one
thread and the comparisons use this process's CPU time (the wall clock is recorded too).
Peak memory is the memory allocated during one step above what is held before it (weights,
gradients, optimizer state, the batch): torch.profiler's allocator events on CPU,
torch.cuda.max_memory_allocated on GPU; the bytes autograd saves for the backward pass are
counted as well, independently of the allocator.
Results go to benchmarks/results.json and benchmarks/results.md (or --out).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import multiprocessing
import os
import queue
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python benchmarks/run.py` from a clone: find coded_lib and benchmarks

from benchmarks import gpu_loop  # noqa: E402
from benchmarks.measure import interleaved, median_ratio, peak_memory, sync  # noqa: E402
from benchmarks.cpu_edition import section  # noqa: E402
from benchmarks.naive_block import naive_model  # noqa: E402
from coded_lib import coding  # noqa: E402
from coded_lib.companion import paper  # noqa: E402
from coded_lib.train import data  # noqa: E402
from coded_lib.analysis.cost import count_multiply_adds  # noqa: E402
from coded_lib.models import count_parameters  # noqa: E402
from coded_lib.decoders import extract_binary_classifier, parameter_fractions  # noqa: E402
from coded_lib.models import build_model  # noqa: E402
from coded_lib.train.presets import get_config  # noqa: E402
from coded_lib.train import build_model_for, make_optimizer, train_step  # noqa: E402

MU = 6.0  # the paper's CIFAR weight of the coding loss (Eq. 6), also the default preset's
TIME_TARGET, MEMORY_TARGET = 1.10, 1.15  # SPEC §5, on CPU

# (plain, coded, input size, batch sizes, rounds): ResNeXt-29 trains at ~8 images/s on 2 idle cores
TRAIN_PAIRS = [("resnext_mini", "coded_resnext_mini", (1, 28, 28), (32, 128), 7),
               ("resnext29_cifar10", "coded_resnext29_cifar10", (3, 32, 32), (8, 16), 4)]
# (model, input size, rounds)
BINARY_MODELS = [("coded_resnext_mini", (1, 28, 28), 5), ("coded_resnext29_cifar10", (3, 32, 32), 3)]

# (data set, ratio, K, N, N_act, the paper's H_min, S_min, S_max) of the schemes the paper does not print
PAPER_SCHEMES = [(dataset.lower().replace("-", ""), ratio, k, n, int(ratio.split("/")[0]), h, s_min, s_max)
                 for dataset, ratio, k, n, h, s_min, s_max, where in paper.SCHEMES if where == "not printed"]


# --- measuring ---------------------------------------------------------------------------------

def clock(device) -> str:
    """The clock the comparisons use: on one CPU thread the process's CPU time, which leaves out the
    time other processes hold the cores (the wall clock counts it); otherwise the wall clock."""
    return "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"


def saved_bytes(model, x, y, device) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one training forward
    (Eq. 6 loss), weights excluded: the activation memory, counted without the allocator."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device):
        out = model(x, targets=y)
        F.cross_entropy(out.logits.float(), y) + MU * out.code_loss
    return sum(saved.values())


def top_ops(fn, n: int = 12) -> str:
    """torch.profiler's tables of the n operators with the most self CPU time and the most memory
    allocated in one call of fn (after a warm-up call)."""
    fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    table = prof.key_averages()
    return (table.table(sort_by="self_cpu_time_total", row_limit=n) + "\n"
            + table.table(sort_by="self_cpu_memory_usage", row_limit=n))


def autocast(device):
    """Precision of training as coded_lib.train runs it: bfloat16 autocast on GPU, float32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def step_fn(model, x, y, device):
    """One training step of Eq. 6 with coded_lib.train's train_step (SGD, Nesterov momentum)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return lambda: train_step(model, x, y, opt, MU, amp=autocast(device))


def build(name, device, **kw):
    torch.manual_seed(0)
    return build_model(name, **kw).to(device)


# --- 1, 2: training step, plain vs coded vs naive coded -----------------------------------------

def bench_train(plain: str, coded: str, input_size, batch: int, device, rounds: int) -> dict:
    """Item 1 and 2 for one model pair and batch size: one row."""
    models = {"plain": build(plain, device), "coded": build(coded, device)}
    models["naive"] = naive_model(models["coded"])
    torch.manual_seed(1)
    x = torch.randn(batch, *input_size, device=device)
    y = torch.randint(0, models["coded"].num_classes, (batch,), device=device)
    steps = {k: step_fn(m.train(), x, y, device) for k, m in models.items()}
    both = interleaved(steps, rounds, device)
    times = both[clock(device)]
    mem = {k: peak_memory(fn, device) for k, fn in steps.items()}
    saved = {k: saved_bytes(m, x, y, device) for k, m in models.items()}
    row = {"models": f"{coded} vs {plain}", "device": device.type, "batch": batch, "rounds": rounds,
           "clock": clock(device), "params_plain": count_parameters(models["plain"]),
           "params_coded": count_parameters(models["coded"])}
    for k in steps:
        row[f"{k}_ms"] = 1e3 * statistics.median(times[k])
        row[f"{k}_wall_ms"] = 1e3 * statistics.median(both["wall"][k])
        row[f"{k}_mb"] = mem[k] / 2**20
        row[f"{k}_saved_mb"] = saved[k] / 2**20
    row["time_ratio"] = median_ratio(times, "coded", "plain")
    row["mem_ratio"] = mem["coded"] / mem["plain"]
    row["saved_ratio"] = saved["coded"] / saved["plain"]
    row["naive_time_ratio"] = median_ratio(times, "naive", "plain")
    row["naive_mem_ratio"] = mem["naive"] / mem["plain"]
    row["naive_saved_ratio"] = saved["naive"] / saved["plain"]
    row["naive_vs_coded_time"] = median_ratio(times, "naive", "coded")
    row["naive_vs_coded_mem"] = mem["naive"] / mem["coded"]
    row["targets_met"] = row["time_ratio"] <= TIME_TARGET and row["mem_ratio"] <= MEMORY_TARGET
    row["load_avg_1min"] = os.getloadavg()[0]
    return row


# --- 3: extracted binary classifier vs the full model -------------------------------------------

def bench_binary(name: str, input_size, batches, rounds: int, c: int = 0) -> list[dict]:
    """Item 3 on CPU, random weights: one row per batch size."""
    full = build(name, "cpu").eval()
    small = extract_binary_classifier(full, c)
    fractions = parameter_fractions(full, c)
    rows = []
    for batch in batches:
        # per image; the coded blocks' Gram matrices W_n^T W_n are shared by the batch
        macs_full, macs_small = (count_multiply_adds(m, input_size, batch) for m in (full, small))
        x = torch.randn(batch, *input_size)
        with torch.no_grad():
            both = interleaved({"full": lambda: full(x), "binary": lambda: small(x)}, rounds, torch.device("cpu"),
                               min_seconds=0.1)
        times = both[clock(torch.device("cpu"))]
        rows.append({
            "model": name, "class": c, "batch": batch, "rounds": rounds, "clock": clock(torch.device("cpu")),
            "params_full": count_parameters(full), "params_binary": count_parameters(small),
            "param_fraction_whole": fractions["whole"], "param_fraction_paths": fractions["residual_paths"],
            "madds_full": macs_full, "madds_binary": macs_small, "madds_fraction": macs_small / macs_full,
            "full_ms": 1e3 * statistics.median(times["full"]), "binary_ms": 1e3 * statistics.median(times["binary"]),
            "latency_ratio": median_ratio(times, "binary", "full"), "load_avg_1min": os.getloadavg()[0],
        })
    return rows


# --- 4: coding-scheme generation ----------------------------------------------------------------

def bench_schemes(which: str, timeout: float | None = 90.0) -> list[dict]:
    """Item 4: Algorithm 1 (coding.generate with the paper's H_min) for each paper configuration
    (``which``: "cifar" or "all"), ImageNet's in a subprocess stopped after ``timeout`` seconds, and
    beside it the scheme the models use (coding.paper_scheme)."""
    rows = []
    for dataset, ratio, k, n, n_act, h_paper, smin_paper, smax_paper in PAPER_SCHEMES:
        paper = {"dataset": dataset, "ratio": ratio, "paper_H_min": h_paper, "paper_S_min": smin_paper,
                 "paper_S_max": smax_paper}
        if which == "all" or dataset != "imagenet":
            # the CIFAR-100 ones take milliseconds: a subprocess (~5 s to start) only for ImageNet's
            limit = timeout if dataset == "imagenet" else None
            rows.append({**paper, **generate_with_timeout(k, n, n_act, h_paper, limit)})
        try:
            scheme = coding.paper_scheme(dataset, ratio)
            rows.append({**paper, "source": "paper_scheme (stored)", **scheme_properties(scheme, k)})
        except (FileNotFoundError, OSError) as e:
            rows.append({**paper, "source": f"paper_scheme: not available ({type(e).__name__})"})
    return rows


def _generate(k, n, n_act, h_min, results=None) -> dict:
    t0 = time.perf_counter()
    try:
        scheme = coding.generate(k, n, n_act, h_min)
        out = {"source": "generate (Algorithm 1)", "seconds": time.perf_counter() - t0, **scheme_properties(scheme, k)}
    except ValueError as e:
        out = {"source": f"generate: {e}"}
    if results is not None:
        results.put(out)
    return out


def generate_with_timeout(k, n, n_act, h_min, timeout: float | None) -> dict:
    """Time coding.generate, in a fresh process given up after ``timeout`` seconds (None: here, no limit)."""
    if timeout is None:
        return _generate(k, n, n_act, h_min)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_generate, args=(k, n, n_act, h_min, results), daemon=True)
    proc.start()
    deadline = time.perf_counter() + timeout
    try:
        while True:
            try:
                return results.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive():
                    return {"source": f"generate: its process failed (exit code {proc.exitcode})"}
                if time.perf_counter() > deadline:
                    return {"source": f"generate: not finished after {timeout:.0f} s"}
    finally:
        proc.terminate()
        proc.join()


def scheme_properties(scheme, k: int) -> dict:
    sums = scheme.column_sums()
    assert scheme.K == k and scheme.table.sum(axis=1).min() == scheme.table.sum(axis=1).max()  # rule A
    return {"H_min": int(scheme.min_hamming()), "S_min": int(sums.min()), "S_max": int(sums.max())}


# --- 5: training throughput of the default preset -----------------------------------------------

def bench_preset(preset: str, steps: int, rounds: int, **overrides) -> list[dict]:
    """Item 5: images/s of training steps of ``preset`` and its baseline on their real data loader
    (random data of the preset's shape where the data set is not installed), interleaved.
    ``overrides``: Config fields changed in both (e.g. a smaller batch_size for the tests)."""
    rows, fns = [], {}
    for name in (preset, preset + "_baseline"):
        cfg = get_config(name, **overrides)
        torch.manual_seed(cfg.seed)
        model = build_model_for(cfg).train()
        info = data.INFO[cfg.dataset]
        try:
            train_ds, _ = data.get_datasets(cfg.dataset, cfg.train_subset, cfg.val_subset, cfg.seed)
            loader = data.make_loader(train_ds, cfg.batch_size, True, seed=cfg.seed)
            source = f"{cfg.dataset} loader (subset {cfg.train_subset})"
        except (FileNotFoundError, OSError, ValueError):
            x = torch.randn(cfg.batch_size, info.in_channels, info.size, info.size)
            loader = [(x, torch.randint(0, info.num_classes, (cfg.batch_size,)))] * (steps * (rounds + 1))
            source = f"random {info.size}x{info.size} data ({cfg.dataset} not installed)"
        opt, _ = make_optimizer(model, cfg)
        batches = iter(loader)

        def run(model=model, opt=opt, batches=batches, mu=cfg.mu):
            for _ in range(steps):
                x, y = next(batches)
                train_step(model, x, y.long(), opt, mu)

        fns[name] = run
        rows.append({"preset": name, "model": cfg.model, "batch": cfg.batch_size, "data": source})
    times = interleaved(fns, rounds, torch.device("cpu"))
    for row in rows:
        row["images_per_s"] = steps * row["batch"] / statistics.median(times["wall"][row["preset"]])
        row["images_per_cpu_s"] = steps * row["batch"] / statistics.median(times["cpu"][row["preset"]])
        row["steps_per_round"], row["rounds"] = steps, rounds
        row["load_avg_1min"] = os.getloadavg()[0]
    return rows


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


# --- output ---------------------------------------------------------------------------------------

def markdown(rows: list[dict], columns: dict) -> str:
    """A markdown table of ``rows``; ``columns`` maps a row key to (header, format)."""
    def cell(v, fmt):
        if v is None:
            return "-"
        return format(v, fmt) if fmt and isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    table = [[h for h, _ in columns.values()]]
    table += [[cell(r.get(k), fmt) for k, (_, fmt) in columns.items()] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


TRAIN_COLUMNS = {"models": ("models", ""), "device": ("device", ""), "batch": ("batch", "d"),
                 "clock": ("clock", ""), "plain_ms": ("plain ms", ".0f"), "coded_ms": ("coded ms", ".0f"), "time_ratio": ("time ratio", ".3f"),
                 "plain_mb": ("plain MB", ".1f"), "coded_mb": ("coded MB", ".1f"), "mem_ratio": ("mem ratio", ".3f"),
                 "saved_ratio": ("saved ratio", ".3f"), "targets_met": ("≤1.10 / ≤1.15", ""), "load_avg_1min": ("load", ".1f")}
NAIVE_COLUMNS = {"models": ("models", ""), "device": ("device", ""), "batch": ("batch", "d"),
                 "naive_ms": ("naive ms", ".0f"), "naive_time_ratio": ("naive/plain time", ".2f"),
                 "naive_vs_coded_time": ("naive/coded time", ".2f"), "naive_mb": ("naive MB", ".1f"),
                 "naive_mem_ratio": ("naive/plain mem", ".2f"), "naive_vs_coded_mem": ("naive/coded mem", ".2f"),
                 "naive_saved_ratio": ("naive/plain saved", ".2f")}
BINARY_COLUMNS = {"model": ("model", ""), "batch": ("batch", "d"), "clock": ("clock", ""), "params_full": ("params full", ","),
                  "params_binary": ("params binary", ","), "param_fraction_whole": ("fraction whole", ".3f"),
                  "param_fraction_paths": ("fraction paths", ".3f"), "madds_fraction": ("madds fraction", ".3f"),
                  "full_ms": ("full ms", ".2f"), "binary_ms": ("binary ms", ".2f"),
                  "latency_ratio": ("latency ratio", ".3f"), "load_avg_1min": ("load", ".1f")}
SCHEME_COLUMNS = {"dataset": ("data set", ""), "ratio": ("ratio", ""), "source": ("ours", ""),
                  "seconds": ("seconds", ".2f"), "H_min": ("H_min", "d"), "S_min": ("S_min", "d"),
                  "S_max": ("S_max", "d"), "paper_H_min": ("paper H_min", "d"), "paper_S_min": ("paper S_min", "d"),
                  "paper_S_max": ("paper S_max", "d")}
OPS_COLUMNS = {"models": ("models", ""), "counting": ("counting", ""), "batch": ("batch", "d"), "plain_ops": ("plain operators", "d"),
               "coded_ops": ("coded operators", "d"), "ops_ratio": ("coded / plain", ".3f"), "target_met": ("≤ 1.3", "")}
LOOP_COLUMNS = {"loop": ("loop", ""), "steps": ("steps", "d"), "batch": ("batch", "d"), "loop_s": ("loop s", ".2f"),
                "bare_steps_s": ("its steps s", ".2f"), "overhead": ("loop / steps - 1", "+.3f"),
                "target_met": ("< 5 %", ""), "load_avg_1min": ("load", ".1f")}
XLA_COLUMNS = {"run": ("run", ""), "compilations_before_each_step": ("compilations before steps 1..6", ""),
               "after_epoch": ("after the epoch (with its evaluation)", "d"),
               "constant_after_step_2": ("constant after step 2", "")}
GPU_COLUMNS = {"row": ("row", ""), "device": ("device", ""), "plain_ms": ("plain ms", ".1f"), "coded_ms": ("coded ms", ".1f"),
               "ratio": ("coded / plain", ".3f"), "target": ("target", ".2f"), "naive_ratio": ("naive / plain", ".2f"),
               "mem_ratio": ("memory coded / plain", ".3f"), "target_met": ("met (time, memory ≤ 1.10)", "")}
PRESET_COLUMNS = {"preset": ("preset", ""), "model": ("model", ""), "batch": ("batch", "d"),
                  "images_per_s": ("images/s (wall)", ".1f"),
                  "images_per_cpu_s": ("images/s (CPU time)", ".1f"), "data": ("data", ""), "load_avg_1min": ("load", ".1f")}


def report(results: dict) -> str:
    m = results["machine"]
    parts = [f"# Benchmarks\n\n{m['cpu']} ({m['cores']} cores), {m['threads']} torch thread(s), torch {m['torch']}"
             + (f", GPU {m['cuda']}" if m["cuda"] else "")
             + f"; load average (1 min) {m['load_start']:.1f} at the start, {m['load_end']:.1f} at the end; "
             f"{m['total_seconds'] / 60:.1f} minutes in all. Other processes may share the cores: timings are "
             "interleaved, a ratio is the median of per-round ratios, and with one thread the clock is this "
             "process's CPU time (\"cpu\"), which leaves out the time other processes hold the cores.\n"]
    if results["train"]:
        parts.append("## 1. Training step, Coded vs plain ResNeXt (same widths)\n\nPeak memory (MB, mem ratio): "
                     "allocated during one step above the weights, gradients, optimizer state and batch "
                     "(activations, temporaries, new gradients). Saved ratio: bytes autograd keeps for the "
                     "backward pass (activations only). "
                     f"Targets on CPU: time ratio ≤ {TIME_TARGET:.2f}, memory ratio ≤ {MEMORY_TARGET:.2f}.\n\n"
                     + markdown(results["train"], TRAIN_COLUMNS) + "\n")
        parts.append("## 2. The naive coded block (N×C_out paths materialised, the authors' way)\n\n"
                     + markdown(results["train"], NAIVE_COLUMNS) + "\n")
    if results["binary"]:
        parts.append("## 3. Extracted binary classifier (class 0) vs the full model, CPU, random weights\n\n"
                     "Multiply-adds per image at that batch size, fvcore's convention (torch.utils.flop_counter / 2); "
                     "fraction whole / paths: parameters of the whole model / of the residual paths only.\n\n"
                     + markdown(results["binary"], BINARY_COLUMNS) + "\n")
    if results["schemes"]:
        parts.append("## 4. Coding-scheme generation (Algorithm 1) vs the paper\n\n"
                     + markdown(results["schemes"], SCHEME_COLUMNS) + "\n")
    if results["preset"]:
        parts.append("## 5. Training throughput of the default preset\n\n"
                     + markdown(results["preset"], PRESET_COLUMNS) + "\n")
    if results.get("ops"):
        parts.append("## 6. Operators per training step (issue 13)\n\nTop-level aten operators (not called by another "
                     "aten operator) of one train_step (forward, Eq. 6, backward, SGD), torch.profiler on the CPU; "
                     "the target (coded / plain <= 1.3) on the step as a GPU runs it (foreach SGD); "
                     "before issue 13: 1,535 vs 818 (1.88, for-loop SGD). The last row: the step with compile=true, "
                     "where inductor fuses the coded block's energy, normalization and mask operators; counted are the "
                     "aten operators it still calls and the kernels it generated (each a launch on a device). Eager, "
                     "each of those operators is a launch of its own: about 14 in the forward and 19 in the backward "
                     "of each coded block against conv3's 2, close to what Eq. 2-3 take written in aten operators "
                     "(Gram conv, product, sum, mean, floor, division, rsqrt, mask, conv3; their gradients).\n\n"
                     + markdown(results["ops"], OPS_COLUMNS) + "\n")
    if results.get("loop"):
        parts.append("## 7. The training loop against its bare steps (issue 13, CPU)\n\nOne epoch of "
                     "`coded_lib.train.train` (fashion_mnist preset, subset), its evaluation taken out, "
                     "against its own train_step calls, both timed inside the loop (the rest: data, augmentation, read-outs); medians of 3 runs, this process's CPU time.\n\n"
                     + markdown(results["loop"], LOOP_COLUMNS) + "\n")
    if results.get("xla"):
        parts.append("## 8. XLA compilations (issue 13, torch_xla on its CPU device)\n\n"
                     + markdown(results["xla"], XLA_COLUMNS) + "\n")
    gpu_note = ("Targets: coded / plain ≤ 1.05 at batch 512 and ≤ 1.10 at 128, NCHW and channels-last, "
                "ResNeXt-29 and ResNeXt-50; memory ≤ 1.10; compiled ≤ 1.03.")
    if results.get("gpu"):
        parts.append("## 9. GPU (issue 13)\n\n" + gpu_note + " Median of 5 interleaved rounds of 10 steps.\n\n"
                     + markdown(results["gpu"], GPU_COLUMNS) + "\n")
    else:
        parts.append("## 9. GPU (issue 13): not yet measured\n\n" + gpu_note + " Every one of them is **not yet "
                     "measured** with this code (`python benchmarks/run.py --device cuda --only gpu` measures them). "
                     "The last measured state, one NVIDIA H100, before issue 13's changes (quoted from issue 13):\n\n"
                     + gpu_loop.LAST_GPU_STATE + "\n")
    if section():  # measured by benchmarks/cpu_edition.py, kept across runs of this script
        parts.append(section())
    if results.get("profile"):
        parts.append("## Profile (where a target was missed)\n\n" + "\n\n".join(
            f"### {k}\n\n```\n{v}\n```" for k, v in results["profile"].items()) + "\n")
    return "\n".join(parts)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds): for the tests")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where item 1-2 also run (they always run on CPU, where the targets apply)")
    p.add_argument("--schemes", choices=("all", "cifar", "none"), default="all",
                   help="which paper configurations to generate (ImageNet: ~10-30 s each on 2 cores)")
    p.add_argument("--scheme-timeout", type=float, default=90.0,
                   help="seconds after which one scheme generation is given up (it runs in a subprocess)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads; 0: all cores on an idle machine, 1 when other processes load it")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top operators when a target is missed")
    p.add_argument("--only", choices=("all", "cpu", "gpu"), default="all",
                   help="gpu: only issue 13's GPU table (with --device cuda); cpu: everything else")
    p.add_argument("--rows", default=None,
                   help="GPU table rows: comma-separated numbers (1-9) or words of their labels, e.g. '512,channels'")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks", help="folder for results.json and results.md")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch.cuda.is_available() is False; allowed here: --device cpu")

    # OpenMP threads wait for each other at the end of every operator: on 2 cores shared with other
    # busy processes, 2 threads made a ResNeXt-29 step 2-5x slower and erratic, 1 thread was steady
    cores = os.cpu_count() or 1
    threads = args.threads or (cores if os.getloadavg()[0] < 0.5 * cores else 1)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run_all(args, threads)
    finally:
        torch.set_num_threads(threads_before)


def run_all(args, threads: int) -> dict:
    t_start = time.perf_counter()
    if args.quick:
        pairs = [(pl, co, size, (4,), 1) for pl, co, size, _, _ in TRAIN_PAIRS[:1]]
        binary, batches, preset_steps, preset_rounds = [(BINARY_MODELS[0][0], BINARY_MODELS[0][1], 1)], (1, 2), 1, 1
    else:
        pairs, binary, batches, preset_steps, preset_rounds = TRAIN_PAIRS, BINARY_MODELS, (1, 64), 3, 3
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if args.device == "cuda" else [])
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
               "torch": torch.__version__, "python": platform.python_version(), "load_start": os.getloadavg()[0],
               "cuda": torch.cuda.get_device_name() if args.device == "cuda" else None}
    results = {"machine": machine, "train": [], "binary": [], "schemes": [], "preset": [], "profile": {},
               "ops": [], "loop": [], "xla": [], "gpu": []}

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)

    rows = gpu_loop.select_rows(args.rows)  # a bad --rows fails before any work
    if args.only != "gpu":
        for device in devices:
            for plain, coded, size, batch_sizes, rounds in pairs:
                for batch in batch_sizes:
                    log(f"1-2. training step {coded} vs {plain} (and naive), batch {batch}, {device.type}")
                    row = bench_train(plain, coded, size, batch, device, rounds)
                    results["train"].append(row)
                    if args.profile and not row["targets_met"]:
                        x = torch.randn(batch, *size, device=device)
                        y = torch.randint(0, 10, (batch,), device=device)
                        for name in (plain, coded):
                            results["profile"][f"{name}, batch {batch}"] = top_ops(
                                step_fn(build(name, device).train(), x, y, device))
        for name, size, rounds in binary:
            log(f"3. binary classifier of {name}")
            results["binary"] += bench_binary(name, size, batches, rounds)
        if args.schemes != "none":
            log(f"4. coding schemes ({args.schemes})")
            results["schemes"] = bench_schemes(args.schemes, args.scheme_timeout)
        log("5. default preset throughput")
        results["preset"] = bench_preset("fashion_mnist", preset_steps, preset_rounds,
                                         **({"batch_size": 8} if args.quick else {}))
        if not args.quick:
            log("6. operators per training step")
            results["ops"] = gpu_loop.bench_ops()
            log("7. the training loop against its bare steps")
            results["loop"] = gpu_loop.bench_loop()
            if importlib.util.find_spec("torch_xla") is not None:
                log("8. XLA compilations per step (PJRT_DEVICE=CPU)")
                results["xla"] = gpu_loop.bench_xla()
    if args.device == "cuda" and args.only != "cpu":
        log(f"9. GPU table ({len(rows)} rows)")
        results["gpu"] = gpu_loop.bench_gpu(rows, torch.device("cuda"))
    machine["load_end"] = os.getloadavg()[0]
    machine["total_seconds"] = time.perf_counter() - t_start

    text = report(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(text)
    return results


if __name__ == "__main__":
    main()
