"""Sizing the full CPU edition (issue 20): seconds per image-epoch of a training step and of evaluation
on a 2-core CPU, for the mini network, its plain twin and a wider one, with the CPU's options.

    python benchmarks/cpu_edition.py            # the table (about 6 minutes on 2 idle cores)
    python benchmarks/cpu_edition.py --quick    # seconds: for the tests

Options measured: one process with 2 threads vs two 1-thread processes side by side (each process
measures itself while the other runs; the pair's rate is twice one's), ``torch.compile`` (inductor)
vs eager, channels-last memory format, and bfloat16 autocast where the CPU has bf16 instructions
(a row of the table only: the editions train in float32). Every number is the median over timed
rounds of ``steps`` steps after a warm-up (the compile happens in the warm-up, and is reported
apart: a run pays it once per process). The table goes to ``benchmarks/cpu_edition.md`` with the
CPU model (and into section 10 of ``benchmarks/results.md``), and the full edition's plan
(``coded_lib.companion.at_scale.FULL``) is sized from it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (name, how to build it): the wider network doubles every width of the mini one (multiples of N = 10)
NETWORKS = ("coded_resnext_mini", "resnext_mini", "coded_resnext_mini_x2")
MODES = ("eager", "channels_last", "compile", "compile+channels_last", "bf16")


def build(name: str):
    """A network of ``NETWORKS``: the library's, or ``<name>_x2``, the mini layout at twice its widths."""
    from coded_lib import models

    if not name.endswith("_x2"):
        return models.build_model(name)
    arch = models.ARCHS["coded_resnext_mini"]
    arch = replace(arch, stem_width=2 * arch.stem_width,
                   stages=tuple(replace(s, c_out=2 * s.c_out, d=2 * s.d) for s in arch.stages))
    return models._build(arch if name.startswith("coded_") else models._plain(arch))


def has_bf16() -> bool:
    from coded_lib.companion.edition import cpu_info

    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_info()["flags"]))


def measure(name: str, mode: str, threads: int, batch: int, steps: int, rounds: int) -> dict:
    """ms per image of a training step (forward, Eq. 6 loss, backward, SGD) and of evaluation."""
    import torch

    from coded_lib.train.loop import model_loss, train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name)
    fmt = torch.channels_last if "channels_last" in mode else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 1, 28, 28).to(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    loss_fn, forward = model_loss, model
    if "compile" in mode:
        loss_fn, forward = torch.compile(model_loss), torch.compile(model)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else None

    def step():
        train_step(model, x, y, opt, 6.0, amp, loss_fn=loss_fn)

    def evaluate():
        with torch.no_grad(), (amp or torch.autocast("cpu", enabled=False)):
            forward(x, y).logits.argmax(1)

    t0 = time.perf_counter()
    model.train()
    step(), step()
    model.eval()
    evaluate(), evaluate()
    warm = time.perf_counter() - t0
    out = {"train": [], "eval": []}
    for _ in range(rounds):
        model.train()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        out["train"].append((time.perf_counter() - t) / (steps * batch) * 1e3)
        model.eval()
        t = time.perf_counter()
        for _ in range(steps):
            evaluate()
        out["eval"].append((time.perf_counter() - t) / (steps * batch) * 1e3)
    return {"network": name, "mode": mode, "threads": threads, "batch": batch,
            "train_ms": statistics.median(out["train"]), "eval_ms": statistics.median(out["eval"]),
            "warmup_s": warm}


def _child(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, env=env)


def measure_pair(name, mode, batch, steps, rounds) -> dict:
    """Two 1-thread processes side by side: each one's rate while the other runs."""
    args = [name, mode, str(batch), str(steps), str(rounds)]
    procs = [_child(args), _child(args)]
    rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    train = statistics.mean(r["train_ms"] for r in rows)
    ev = statistics.mean(r["eval_ms"] for r in rows)
    return {"network": name, "mode": mode, "threads": "2 × 1", "batch": batch, "train_ms": train,
            "eval_ms": ev, "warmup_s": max(r["warmup_s"] for r in rows)}


def image_epoch_s(row: dict, train_images: int = 60000, test_images: int = 10000) -> float:
    """Wall seconds of one 60,000-image epoch plus the 10,000 test images' evaluation, per process."""
    return (row["train_ms"] * train_images + row["eval_ms"] * test_images) / 1e3


def table(rows: list[dict]) -> str:
    import torch

    from coded_lib.companion.edition import cpu_info

    cpu = cpu_info()
    eager = {(r["network"]): r["train_ms"] for r in rows if r["mode"] == "eager" and r["threads"] == 1}
    lines = [f"CPU: {cpu['model']} ({cpu['cores']} cores; flags: {', '.join(cpu['flags']) or 'none of avx2/avx512'}), "
             f"torch {torch.__version__}, batch {rows[0]['batch']}, float32 unless the mode says bf16.", "",
             "| network | mode | processes × threads | train (ms / image, per process) | eval (ms / image) | "
             "speed-up over eager 1 thread (all processes together) | s per 60k-image epoch + 10k eval (per process) | "
             "warm-up incl. compile (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        procs = 2 if r["threads"] == "2 × 1" else 1
        speed = eager.get(r["network"], float("nan")) / r["train_ms"] * procs
        lines.append(f"| {r['network']} | {r['mode']} | {r['threads'] if procs == 2 else '1 × ' + str(r['threads'])} | "
                     f"{r['train_ms']:.3f} | {r['eval_ms']:.3f} | {speed:.2f} | {image_epoch_s(r):.0f} | {r['warmup_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings (seconds): for the tests")
    ap.add_argument("--child", nargs=5, metavar=("NETWORK", "MODE", "BATCH", "STEPS", "ROUNDS"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "cpu_edition.md")
    ap.add_argument("--batch", type=int, default=64, help="the full edition's batch (the preset's)")
    args = ap.parse_args(argv)
    if args.child:
        name, mode, batch, steps, rounds = args.child
        print(json.dumps(measure(name, mode, 1, int(batch), int(steps), int(rounds))))
        return []
    steps, rounds = (2, 1) if args.quick else (15, 3)
    networks = NETWORKS[:1] if args.quick else NETWORKS
    modes = [m for m in MODES if m != "bf16" or has_bf16()]
    rows = []
    for name in networks:
        for mode in (modes if name == NETWORKS[0] else ("eager", "compile")):
            for threads in (1, 2):
                rows.append(measure(name, mode, threads, args.batch, steps, rounds))
                print(rows[-1], flush=True)
            if mode in ("eager", "compile", "compile+channels_last"):
                rows.append(measure_pair(name, mode, args.batch, steps, rounds))
                print(rows[-1], flush=True)
    text = table(rows)
    if not args.quick:
        args.out.write_text(text)
        results = args.out.parent / "results.md"
        if results.exists():  # section 10 of results.md, as benchmarks/run.py writes it
            old = results.read_text()
            results.write_text(old.split(SECTION)[0].rstrip() + "\n\n" + section(args.out))
    print(text)
    return rows


SECTION = "## 10. Sizing the full CPU edition"


def section(path=REPO / "benchmarks" / "cpu_edition.md") -> str:
    """Section 10 of benchmarks/results.md: the last table of this script ("" before it ran)."""
    path = Path(path)
    if not path.exists():
        return ""
    return (f"{SECTION} (issue 20, `python benchmarks/cpu_edition.py`)\n\n"
            "Seconds per image of a training step and of evaluation, per process; medians of 3 rounds of 15 steps "
            "after a warm-up that includes the compilation. The full edition trains with the fastest of them on "
            "this CPU (two compiled channels-last 1-thread processes side by side).\n\n" + path.read_text())


if __name__ == "__main__":
    main()
