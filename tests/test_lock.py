"""One process per folder (issue 20): a second training or runner on the same folder refuses at once,
naming the first's process id; a lock left by a killed process does not block the next start."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from coded_lib.companion import at_scale
from coded_lib.train.lock import LOCK, FolderBusy, FolderLock

REPO = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from coded_lib.train.lock import FolderLock\n" \
       "with FolderLock(sys.argv[1], 'a test'):\n    print('held', flush=True); time.sleep(60)\n"


def _holder(folder):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_holder_refused_with_the_first_pid_and_a_killed_holder_blocks_nothing(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(FolderBusy, match=f"in use by process {p.pid} \\(a test\\)"):
            with FolderLock(tmp_path, "another"):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (tmp_path / LOCK).read_text().split()[0] == str(p.pid)  # the killed process's pid is still written...
    with FolderLock(tmp_path, "the next start"):                    # ...and blocks nothing
        assert (tmp_path / LOCK).read_text().strip() == f"{os.getpid()} the next start"


def test_two_trainings_on_one_run_dir_the_second_refuses_at_once(tmp_path):
    p = _holder(tmp_path / "run")  # stands for a training holding its folder
    try:
        out = subprocess.run([sys.executable, "-m", "coded_lib.train", "--preset", "smoke", "--run-dir", str(tmp_path / "run")],
                             capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 3, out.stderr
        assert f"in use by process {p.pid}" in out.stderr
        assert not (tmp_path / "run" / "checkpoint.pt").exists()  # refused before any epoch
    finally:
        p.kill()
        p.wait()


def test_a_second_runner_on_the_same_runs_folder_refuses(tmp_path):
    runs = tmp_path / "runs"
    p = _holder(runs)
    try:
        plan = at_scale.Plan(preset="smoke", seeds=(0,), analysis=(), jobs=1)
        with pytest.raises(FolderBusy, match=str(p.pid)):
            at_scale.run(tmp_path / "out", runs, plan)
    finally:
        p.kill()
        p.wait()
