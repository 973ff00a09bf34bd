"""Fault injection (issue 12): a training process killed with SIGKILL at random moments, 20 times in
a row, at least 5 of them in the middle of a checkpoint write, each time resumed by rerunning the
same command. Compared with an uninterrupted run of the same command: the final weights, optimizer
state and metrics must be equal, and after every kill each file of the run folder (other than the
``*.tmp`` file a write in progress leaves, which the next start deletes) must be complete.

The writes are caught through the checkpoint's test hook: with ``CODED_TEST_SLOW_CHECKPOINT=s`` in
the environment, ``save_checkpoint`` writes half of the file, says so on stderr, sleeps s seconds,
then writes the rest. The other kills wait for a random number of epoch lines, then a random time.
About 2-3 minutes on a busy 2-core machine (21 process starts of about 3 s each).
"""
import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from coded_lib.train.checkpoint import SLOW_WRITE_ENV, load_checkpoint
from coded_lib.train.loop import CHECKPOINT_KEYS

REPO = Path(__file__).resolve().parents[1]
# 4 steps per epoch on 32 scikit-learn digits: many epochs, so that 20 kills land all over the run
# enough epochs that 20 kills (each after up to 2 epochs + 0.4 s, ~0.2 s an epoch on an idle CPU) never
# reach the end of the run: at 40 the kills used up ~36 epochs on average
SETS = dict(epochs=120, batch_size=8, train_subset=32, val_subset=16)
TRIALS, WRITE_TRIALS, PAUSE_S = 20, 7, 1.0


def _cmd(run_dir):
    sets = [a for k, v in SETS.items() for a in ("--set", f"{k}={v}")]
    return [sys.executable, "-m", "coded_lib.train", "--preset", "smoke", *sets, "--run-dir", str(run_dir)]


def _env(**extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}
    for k in ("CODED_RUNS", SLOW_WRITE_ENV):
        env.pop(k, None)
    return {**env, **extra}


def _kill_when(run_dir, marker: bytes, count: int, delay: float, env) -> tuple[int | None, bytes]:
    """Start the run; after the ``count``-th ``marker`` on its stderr wait ``delay`` s and SIGKILL it.
    Returns (return code, stderr); the return code is -9 when it was killed."""
    proc = subprocess.Popen(_cmd(run_dir), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if b"".join(seen).count(marker) >= count:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    reader.join(timeout=5)
    return proc.returncode, b"".join(seen)


def _assert_folder_complete(run_dir: Path) -> None:
    """Every file but a write in progress (*.tmp) is whole: checkpoints load and pass their checksum,
    config.json parses, metrics.csv has full rows that agree with the checkpoint's history."""
    names = {p.name for p in run_dir.iterdir()}
    assert not any(n.endswith(".damaged") for n in names), names
    histories = [load_checkpoint(run_dir / name, CHECKPOINT_KEYS)["history"]  # raises on a torn or altered file
                 for name in ("checkpoint.pt", "checkpoint.prev.pt") if name in names]
    assert histories or "metrics.csv" not in names
    if "config.json" in names:
        assert json.loads((run_dir / "config.json").read_text())["epochs"] == SETS["epochs"]
    if "metrics.csv" in names:
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert len({len(r) for r in rows}) == 1 and all(all(c != "" for c in r) for r in rows[1:])
        # written after the checkpoint: as long as its history, or one row short (repaired at the next start)
        newest = [h["epoch"] for h in histories[0]]  # checkpoint.pt, or .prev.pt if killed between the renames
        assert [int(r[0]) for r in rows[1:]] in (newest, newest[:-1])
    assert set(names) <= {"checkpoint.pt", "checkpoint.prev.pt", "config.json", "metrics.csv", ".lock",
                          "checkpoint.pt.tmp", "metrics.csv.tmp", "config.json.tmp"}, names


def test_twenty_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_cmd(whole) + ["--no-progress"], cwd=REPO, env=_env(), check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    rng = random.Random(12)
    write_trials = set(rng.sample(range(TRIALS), WRITE_TRIALS))
    kills = kills_in_write = 0
    for trial in range(TRIALS):
        if trial in write_trials:  # inside a checkpoint write, forced by the test hook
            rc, err = _kill_when(killed, b"checkpoint write paused", rng.randint(1, 2), rng.uniform(0.0, 0.8 * PAUSE_S),
                                 _env(**{SLOW_WRITE_ENV: str(PAUSE_S)}))
        else:  # anywhere: start-up, a training step, evaluation, a write, between two renames
            rc, err = _kill_when(killed, b" | val loss ", rng.randint(0, 2), rng.uniform(0.0, 0.4), _env())
        assert rc == -signal.SIGKILL, f"trial {trial}: the run ended on its own (rc {rc}):\n{err.decode()[-2000:]}"
        kills += 1
        tmp = killed / "checkpoint.pt.tmp"
        if trial in write_trials:
            assert tmp.exists(), f"trial {trial}: killed, but not inside a checkpoint write"
            kills_in_write += 1
        _assert_folder_complete(killed)
    # the last start resumes and finishes; no temporary file, no damaged file is left behind
    subprocess.run(_cmd(killed) + ["--no-progress"], cwd=REPO, env=_env(), check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    # .lock: the run folder's lock file (coded_lib.train.lock), empty while no process holds it
    assert sorted(p.name for p in killed.iterdir()) == [".lock", "checkpoint.prev.pt", "checkpoint.pt", "config.json",
                                                        "metrics.csv"]
    assert (killed / ".lock").read_text() == ""
    a, b = (load_checkpoint(d / "checkpoint.pt", CHECKPOINT_KEYS) for d in (whole, killed))
    mismatches = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    mismatches += [f"optimizer {i}" for i, (s, t) in enumerate(zip(a["optimizer"]["state"].values(),
                                                                    b["optimizer"]["state"].values()))
                   if not torch.equal(s["momentum_buffer"], t["momentum_buffer"])]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]  # noqa: E731
    if drop(a["history"]) != drop(b["history"]):
        mismatches.append("history")
    with open(whole / "metrics.csv") as f, open(killed / "metrics.csv") as g:
        if drop(csv.DictReader(f)) != drop(csv.DictReader(g)):
            mismatches.append("metrics.csv")
    print(f"fault injection: {kills} SIGKILLs, {kills_in_write} inside a checkpoint write, "
          f"{len(mismatches)} mismatches")
    assert kills == TRIALS and kills_in_write >= 5 and mismatches == []
