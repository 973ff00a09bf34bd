"""Timing and memory measurements shared by the benchmarks (benchmarks/run.py, benchmarks/gpu_loop.py):
round-robin timings on two clocks, medians of per-round ratios, and the peak memory of a call."""
from __future__ import annotations

import math
import statistics
import time

import torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, rounds: int, device, min_seconds: float = 0.0) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each function, measured round-robin over ``rounds`` rounds, on two clocks:
    ``{"wall": {name: [...]}, "cpu": {name: [...]}}`` (cpu: this process's CPU time).

    Each function is first called once untimed (allocations, oneDNN primitive caches). A function
    faster than ``min_seconds`` is called several times per round and the time divided.
    """
    repeats = {}
    for name, fn in fns.items():
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        repeats[name] = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    times = {"wall": {name: [] for name in fns}, "cpu": {name: [] for name in fns}}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(repeats[name]):
                fn()
            sync(device)
            times["wall"][name].append((time.perf_counter() - t0) / repeats[name])
            times["cpu"][name].append((time.process_time() - c0) / repeats[name])
    return times


def median_ratio(times: dict, a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) within the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def peak_memory(fn, device) -> int:
    """Bytes allocated during fn() above what was allocated before it (its activations and temporaries)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    # Every allocation and free of the CPU allocator while profiling is a kineto "[memory]" event
    # (the profiler's FunctionEvents fold most of them into operators, so they are read from here);
    # frees of blocks allocated before the profile are not reported, so the sum starts from zero.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak
