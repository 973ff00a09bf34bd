"""Issue 12: bad input gets a clear error, nothing is silently wrong.

One test per row of the issue's table (a value, what is allowed, what to do; or a repair; or a
warning where a fallback is deliberate), the damaged-checkpoint recovery and papermill's
parameters checked on a tiny notebook run by papermill itself.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

from coded_lib import calibration, coding
from coded_lib.decoders import early_decode, removal_mask
from coded_lib.models import build_model
from coded_lib.train import data, load_run, read_metrics
from coded_lib.train.checkpoint import CheckpointError, load_checkpoint, previous_path, save_checkpoint
from coded_lib.train.loop import main
from coded_lib.train.presets import get_config

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--set", "epochs=2", "--set", "batch_size=8", "--set", "train_subset=32",
        "--set", "val_subset=16", "--no-progress"]


def _cli(capsys, *args):
    """Run the CLI in this process; (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        main([*TINY, *args])
    return exit_.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run of the tiny smoke configuration."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    main([*TINY, "--run-dir", str(run_dir)])
    return run_dir


@pytest.mark.parametrize("sets, message", [
    (["mu=nan"], "mu=nan is not allowed; allowed: a finite number"),
    (["lr=nan"], "lr=nan is not allowed; allowed: a finite number"),
    (["lr=inf"], "lr=inf is not allowed; allowed: a finite number"),
    (["momentum=50"], r"momentum=50.0 is not allowed; allowed: a number in [0, 1)"),
    (["device=cuda"] if not torch.cuda.is_available() else ["device=tpu"], "device="),
])
def test_cli_refuses_bad_values_in_one_line(capsys, tmp_path, sets, message):
    code, err = _cli(capsys, "--run-dir", str(tmp_path / "r"), *[a for s in sets for a in ("--set", s)])
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_cli_refuses_an_empty_run_dir_and_missing_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _cli(capsys, "--run-dir", "")
    assert code == 2 and "run_dir='' is empty" in err and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("CODED_DATA", str(tmp_path))  # no CIFAR-10 there, and no download allowed
    code, err = _cli(capsys, "--run-dir", str(tmp_path / "c"), "--set", "dataset=cifar10")
    assert code == 2 and "cifar10 not found" in err and "download=true" in err and "Traceback" not in err


def test_cli_refuses_another_configuration_in_a_run_folder(capsys, finished):
    code, err = _cli(capsys, "--run-dir", str(finished), "--set", "mu=3")
    assert code == 2 and "another configuration (mu: 1.0 -> 3.0)" in err and "Traceback" not in err


def test_a_diverging_run_stops_before_saving_the_epoch(capsys, tmp_path):
    code, err = _cli(capsys, "--run-dir", str(tmp_path / "d"), "--set", "lr=1e30")
    assert code == 1 and "= nan" in err and "epoch 1: the run diverged" in err and "smaller lr" in err
    assert not (tmp_path / "d" / "checkpoint.pt").exists()  # never marked finished


def test_ctrl_c_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "i"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # far more epochs than it can run before the signal: a tiny epoch takes milliseconds, and 200 of
    # them once finished before a descheduled test could send it (exit 0 in CI)
    cmd = [sys.executable, "-m", "coded_lib.train", *TINY[:-1], "--set", "epochs=1000000", "--run-dir", str(run_dir)]
    # SIGINT back to its default in the child: a test run started in the background by a non-interactive
    # shell (as CI may be) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert f"run the same command again to resume {run_dir} from its last checkpoint" in err


def test_damaged_and_foreign_checkpoints_are_refused_by_name(tmp_path):
    path = tmp_path / "checkpoint.pt"
    good = {"epoch": 1, "w": torch.arange(4.0)}
    save_checkpoint(good, path)
    save_checkpoint({"epoch": 2, "w": torch.ones(4)}, path)
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    raw = path.read_bytes()
    for damage in (raw[:len(raw) // 2], b"", os.urandom(len(raw))):
        path.write_bytes(damage)
        with pytest.raises(CheckpointError, match=f"{path} is damaged"):
            load_checkpoint(path)
    # one flipped byte inside a tensor: torch.load reads it, the checksum does not match
    at = raw.index(torch.ones(4).numpy().tobytes())
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    with pytest.raises(CheckpointError, match="do not match their SHA-256"):
        load_checkpoint(path)
    torch.save({"conv.weight": torch.ones(2)}, path)  # a bare state dict
    with pytest.raises(CheckpointError, match=r"not a training checkpoint .* lacks \['epoch'"):
        load_checkpoint(path, ("epoch", "model"))


def test_a_run_with_a_damaged_checkpoint_goes_on_from_the_previous_one(tmp_path, capsys):
    run_dir = tmp_path / "r"
    main([*TINY, "--run-dir", str(run_dir), "--set", "epochs=3"])
    whole = load_checkpoint(run_dir / "checkpoint.pt")
    (run_dir / "checkpoint.pt").write_bytes(b"\x00" * 100)
    main([*TINY, "--run-dir", str(run_dir), "--set", "epochs=3"])
    err = capsys.readouterr().err
    assert f"{run_dir / 'checkpoint.pt'} is damaged" in err and "previous checkpoint" in err and "(epoch 2)" in err
    assert (run_dir / "checkpoint.pt.damaged").exists()
    again = load_checkpoint(run_dir / "checkpoint.pt")
    assert again["epoch"] == 3 and all(torch.equal(whole["model"][k], again["model"][k]) for k in whole["model"])
    # both damaged: refused, never retrained from scratch
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run_dir / name).write_bytes(b"junk")
    code, err = _cli(capsys, "--run-dir", str(run_dir), "--set", "epochs=3")
    assert code == 2 and "No usable checkpoint is left" in err


def test_missing_or_short_metrics_of_a_finished_run_are_rebuilt(finished):
    from coded_lib.train import ensure_run

    rows = read_metrics(finished)
    for damage in ("delete", "short"):
        path = finished / "metrics.csv"
        if damage == "delete":
            path.unlink()
        else:
            path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
        ensure_run("smoke", finished, progress=False, epochs=2, batch_size=8, train_subset=32, val_subset=16)
        assert read_metrics(finished) == rows


def test_load_run_checks_the_checkpoints_own_config(finished, tmp_path):
    plain = tmp_path / "plain"
    main([*TINY, "--run-dir", str(plain), "--set", "model=resnext_mini", "--set", "mu=0", "--set", "epochs=1"])
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_text((finished / "config.json").read_text())
    (copy / "checkpoint.pt").write_bytes((plain / "checkpoint.pt").read_bytes())
    with pytest.raises(ValueError, match="model: 'resnext_mini' in the checkpoint, 'coded_resnext_mini' in config.json"):
        load_run(copy)
    model, cfg = load_run(finished)
    assert cfg.model == "coded_resnext_mini" and not model.training


def test_data_dir_fallback_warns(tmp_path, monkeypatch):
    if not data.FASHION_DIR.is_dir():
        pytest.skip("needs the Debian package dataset-fashion-mnist for the fallback")
    monkeypatch.setenv("CODED_DATA", str(tmp_path))
    with pytest.warns(UserWarning, match=f"no Fashion-MNIST idx files in {tmp_path}"):
        assert data.find_fashion_mnist() == data.FASHION_DIR
    with pytest.warns(UserWarning, match="/nonexistent"):
        data.find_fashion_mnist("/nonexistent")


@pytest.mark.parametrize("value, smoke", [("1", True), ("true", True), ("ON", True), ("0", False),
                                          ("false", False), ("no", False), ("", False), ("maybe", None)])
def test_coded_smoke_values(monkeypatch, value, smoke):
    from coded_lib.companion.notebook import is_smoke

    monkeypatch.setenv("CODED_SMOKE", value)
    if smoke is None:
        with pytest.raises(ValueError, match="CODED_SMOKE='maybe' is not understood"):
            is_smoke()
    else:
        assert is_smoke() is smoke


def test_library_functions_refuse_nan_and_impossible_values():
    with pytest.raises(ValueError, match="confidence holds 1 nan"):
        calibration.calibration_errors([0.5, math.nan], [1, 0])
    with pytest.raises(ValueError, match="correct must be booleans or 0/1"):
        calibration.calibration_errors([0.5, 0.7], [2, 5])
    with pytest.raises(ValueError, match="at least one sample"):
        calibration.fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="nan/inf"):
        calibration.fit_temperature(torch.full((2, 3), math.nan), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="leaves no sample to fit"):
        calibration.calibration_experiment(torch.randn(3, 3), torch.tensor([0, 1, 2]), torch.zeros(3, 2).long())
    scheme = coding.paper_scheme("cifar10", "3/10")
    for energies in (torch.zeros(2, 10), torch.full((2, 10), math.nan)):
        with pytest.raises(ValueError, match=r"energies of samples \[0, 1\] are nan, inf, negative or all zero"):
            early_decode(energies, scheme)
    model = build_model("coded_resnext_mini")
    with pytest.raises(ValueError, match=r"allowed: 0..9"):
        removal_mask(model, torch.tensor([3, -1]), block=0, k=1)
    with pytest.raises(IndexError):  # the coding loss no longer takes the last class's codeword for -1
        model(torch.randn(2, 1, 28, 28), torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="in_channels=0; allowed: a positive integer"):
        build_model("coded_resnext_mini", in_channels=0)
    with pytest.raises(ValueError, match=r"bn_momentum=5; allowed: a number in \(0, 1\]"):
        build_model("coded_resnext_mini", bn_momentum=5)
    with pytest.raises(ValueError, match="a finite number"):
        get_config("smoke", mu=math.inf)


# --- papermill parameters ----------------------------------------------------------------------

def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    params = nbformat.v4.new_code_cell('preset = "fashion_mnist"\nblocks = None  # None: every block\nrepeats = 2\n'
                                       'lr = 0.1\nsizes = [1, 2]\nn_val = 500  # images; None: all of them')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json\nfrom coded_lib.companion import notebook as nb\nnb.setup(globals())\n"
        "print(json.dumps(dict(blocks=blocks, repeats=repeats, lr=lr, sizes=sizes, preset=preset, n_val=n_val)))")]
    nbformat.write(nb, path)


def test_papermill_parameters_are_parsed_and_typos_refused(tmp_path, monkeypatch):
    import papermill

    monkeypatch.delenv("CODED_SMOKE", raising=False)
    _tiny_notebook(tmp_path / "t.ipynb")
    # what `papermill t.ipynb o.ipynb -p blocks "[9]" -p repeats 3 -p lr 1 -p sizes None` passes
    out = papermill.execute_notebook(tmp_path / "t.ipynb", tmp_path / "o.ipynb", cwd=str(tmp_path), progress_bar=False,
                                     parameters={"blocks": "[9]", "repeats": 3, "lr": 1, "sizes": "(4, 5)", "n_val": None})
    printed = json.loads(out.cells[-1].outputs[0]["text"])
    # n_val's comment documents None (the editions pass it): kept; repeats' does not: refused below
    assert printed == {"blocks": [9], "repeats": 3, "lr": 1.0, "sizes": [4, 5], "preset": "fashion_mnist", "n_val": None}
    assert isinstance(printed["lr"], float)
    for params, message in (({"reapeats": 1}, r"papermill parameter\(s\) \['reapeats'\] are not parameters"),
                            ({"repeats": "many"}, "repeats='many' cannot be read as int"),
                            ({"lr": math.nan}, "numbers must be finite"),
                            ({"repeats": None}, "repeats=None is NoneType; allowed: int")):
        with pytest.raises(papermill.PapermillExecutionError, match=message):
            papermill.execute_notebook(tmp_path / "t.ipynb", tmp_path / "o.ipynb", cwd=str(tmp_path),
                                       progress_bar=False, parameters=params)


REDUCE_WORKER = """
import sys, torch, torch.distributed as dist
from coded_lib.train.loop import Place, _reduce_sum
dist.init_process_group("gloo")
rank = dist.get_rank()
place = Place(torch.device("cpu"), "cpu", rank=rank, world=2, ddp=True)
sums = torch.tensor([rank + 1.0, 10.0 * (rank + 1)])
first = _reduce_sum(sums, place)     # a read-out after 50 steps
sums += 1                            # the next steps add to the running sums
second = _reduce_sum(sums, place)    # the epoch's end
torch.save({"first": first, "second": second, "sums": sums}, sys.argv[1] + f"/r{rank}.pt")
dist.destroy_process_group()
"""


def test_reading_the_running_sums_of_two_processes_twice_counts_each_step_once(tmp_path):
    """Two gloo processes: each read-out is the sum of both processes' running sums as they are
    (by hand: [1, 10] + [2, 20], then one more per process), and a read leaves the sums unchanged."""
    script = tmp_path / "worker.py"
    script.write_text(REDUCE_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(31500 + os.getpid() % 1000), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path)], env={**env, "RANK": str(r)})
             for r in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    for r in range(2):
        got = torch.load(tmp_path / f"r{r}.pt", weights_only=True)
        assert got["first"].tolist() == [3.0, 30.0]
        assert got["second"].tolist() == [5.0, 32.0]
        assert got["sums"].tolist() == [r + 2.0, 10.0 * (r + 1) + 1]
