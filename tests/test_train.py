"""coded_lib.train: presets, checkpoint and the loop.

The resume tests run the CLI in subprocesses and kill them for real; the distributed test runs
two gloo processes; the XLA test runs torch_xla on its CPU device.
"""
import csv
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from coded_lib.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from coded_lib.train.presets import get_config, parse_value

REPO = Path(__file__).resolve().parents[1]
# 2 short epochs of the smoke preset (scikit-learn digits), 16 steps each: long enough to be killed mid-epoch
SMOKE_SETS = dict(epochs=2, batch_size=8, train_subset=128, val_subset=64)
SMOKE_ARGS = ["--preset", "smoke"] + [a for k, v in SMOKE_SETS.items() for a in ("--set", f"{k}={v}")]


def _env(**extra):
    # one thread per process: on a shared machine two spinning OpenMP threads can be 5x slower than one
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}
    env.pop("CODED_RUNS", None)
    return env


def _cli(run_dir, *args):
    return [sys.executable, "-m", "coded_lib.train", *SMOKE_ARGS, "--run-dir", str(run_dir), *args]


def _weights(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoint.pt")["model"]


# --- presets -----------------------------------------------------------------------------------

def test_presets_follow_the_paper():
    """SPEC §1.4, number by number."""
    c10, c100 = get_config("cifar10"), get_config("cifar100")
    for c in (c10, c100):
        assert (c.epochs, c.batch_size, c.lr, c.momentum, c.nesterov, c.weight_decay) == (300, 512, 0.1, 0.9, True, 5e-4)
        assert (c.mu, c.p_drop, c.bn_momentum, c.lr_min) == (6, 0.1, 0.1, 1e-5)
    assert (c10.randaugment, c100.randaugment) == ("rand-m4-n3", "rand-m2-n1")
    assert (c10.model, c100.model) == ("coded_resnext29_cifar10", "coded_resnext29_cifar100")
    im = get_config("imagenet")
    assert (im.epochs, im.warmup_epochs, im.cooldown_epochs, im.batch_size, im.lr, im.weight_decay) == (250, 5, 10, 1536, 0.6, 1e-4)
    assert (im.randaugment, im.random_erasing, im.random_erasing_count) == ("rand-m7-n2-mstd0.5", 0.4, 3)
    assert (im.train_size, im.eval_size, im.mu, im.p_drop, im.bn_momentum) == (160, 224, 2, 0.1, 0.1)
    i150 = get_config("imagenet150")
    assert (i150.epochs, i150.warmup_epochs, i150.batch_size, i150.lr, i150.lr_min) == (150, 5, 1024, 0.4, 1e-5)
    assert (i150.train_size, i150.eval_size) == (160, 160)
    assert (i150.randaugment, i150.random_erasing, i150.mu) == ("rand-m10-n2", 0.0, 1)
    for name in ("cifar10", "cifar100", "imagenet", "imagenet150", "fashion_mnist"):
        base = get_config(name + "_baseline")
        assert base.mu == 0 and base.p_drop == 0 and base.model == get_config(name).model.replace("coded_", "")
        assert base.epochs == get_config(name).epochs
    assert get_config("fashion_mnist").model == "coded_resnext_mini"


def test_bad_presets_keys_and_values_are_rejected():
    with pytest.raises(ValueError, match=r"unknown preset 'cifar'; allowed: .*'cifar10'"):
        get_config("cifar")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['learning_rate'\]; allowed: .*'lr'"):
        get_config("smoke", learning_rate=0.1)
    with pytest.raises(ValueError, match=r"combine='mean' is not allowed; allowed: \('sum', 'concat'\)"):
        get_config("smoke", combine="mean")
    with pytest.raises(ValueError, match=r"epochs='3' is not allowed; allowed: a value of type int"):
        get_config("smoke", epochs="3")
    with pytest.raises(ValueError, match=r"model='resnet50'.*'coded_resnext_mini'"):
        get_config("smoke", model="resnet50")
    with pytest.raises(ValueError, match="p_drop=1.0"):
        get_config("smoke", p_drop=1.0)
    with pytest.raises(ValueError, match="loss_exponent=3"):
        get_config("smoke", loss_exponent=3)
    with pytest.raises(ValueError, match="warmup_epochs"):
        get_config("smoke", warmup_epochs=5)
    with pytest.raises(ValueError, match="train_subset=0"):
        get_config("smoke", train_subset=0)


def test_cli_rejects_bad_input(capsys):
    from coded_lib.train import main

    for args, message in ((["--preset", "nope"], "unknown preset 'nope'"),
                          (["--preset", "smoke", "--set", "mu=high"], "mu='high' is not allowed"),
                          (["--preset", "smoke", "--set", "colour=red"], "unknown config field 'colour'"),
                          (["--preset", "smoke", "--set", "epochs"], "expected key=value"),
                          (["--preset", "smoke", "--set", "epochs=0"], "epochs=0 is not allowed")):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_parse_value_uses_the_field_type():
    assert parse_value("epochs", "3") == 3 and parse_value("lr", "0.05") == 0.05
    assert parse_value("nesterov", "false") is False and parse_value("skip", "1") is True
    assert parse_value("train_subset", "none") is None and parse_value("randaugment", "rand-m9-n2") == "rand-m9-n2"
    assert parse_value("loss_exponent", "2") == 2 and parse_value("loss_exponent", "abs") == "abs"
    assert parse_value("ratios", "c3=4/10,c4=2/10") == {"c3": "4/10", "c4": "2/10"}
    assert parse_value("ratios", '{"c3": "4/10"}') == {"c3": "4/10"}
    cfg = get_config("smoke", **{k: parse_value(k, v) for k, v in (("mu", "2"), ("ratios", "c3=4/10"))})
    assert cfg.mu == 2.0 and cfg.model_overrides()["ratios"] == {"c3": "4/10"}
    with pytest.raises(ValueError, match="nesterov='maybe'"):
        parse_value("nesterov", "maybe")


def test_lr_schedule_matches_torch_cosine():
    """Stepped once per epoch, as the authors': on CIFAR torch's CosineAnnealingLR over the epochs;
    on ImageNet timm's CosineLRScheduler (linear warm-up from warmup_lr, un-shifted cosine, then the
    floor for the cool-down epochs, which timm's train script adds after --epochs)."""
    from timm.scheduler import CosineLRScheduler

    from coded_lib.train import make_optimizer

    cfg = get_config("smoke", epochs=6, lr=0.2, lr_min=0.01)
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg)
    ref_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.2)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=6, eta_min=0.01)
    for _ in range(6):
        assert math.isclose(opt.param_groups[0]["lr"], ref_opt.param_groups[0]["lr"], rel_tol=1e-9)
        opt.step(), sched.step(), ref_opt.step(), ref.step()

    for cfg in (get_config("smoke", epochs=12, lr=0.2, lr_min=0.01, warmup_epochs=3, cooldown_epochs=2),
                get_config("imagenet150"), get_config("imagenet")):
        opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg)
        ref_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=cfg.lr)
        ref = CosineLRScheduler(ref_opt, t_initial=cfg.epochs - cfg.cooldown_epochs, lr_min=cfg.lr_min,
                                warmup_t=cfg.warmup_epochs, warmup_lr_init=cfg.warmup_lr)
        for epoch in range(cfg.epochs):
            ref.step(epoch)  # timm's train script: step(epoch + 1) after each epoch, from the initial epoch 0
            assert math.isclose(opt.param_groups[0]["lr"], ref_opt.param_groups[0]["lr"], rel_tol=1e-9), epoch
            opt.step(), sched.step()
    assert get_config("imagenet150").warmup_lr == 1e-4


# --- checkpoints -------------------------------------------------------------------------------

def test_rng_state_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(5)
    random.gauss(0, 1), np.random.randn()  # leave cached Gaussians in both
    save_checkpoint({"rng": rng_state(gen)}, tmp_path / "c.pt")
    first = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1), np.random.randn(),
             torch.randint(0, 100, (3,), generator=gen))
    state = torch.load(tmp_path / "c.pt", weights_only=True)["rng"]  # readable with weights_only
    set_rng_state(state, gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1), np.random.randn(),
             torch.randint(0, 100, (3,), generator=gen))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A process killed (SIGKILL) halfway through writing a checkpoint leaves the old one loadable."""
    script = textwrap.dedent(f"""
        import os, signal, torch
        from coded_lib.train import checkpoint
        path = {str(tmp_path / "checkpoint.pt")!r}
        checkpoint.save_checkpoint({{"epoch": 1, "w": torch.arange(1000.0)}}, path)
        real_save = torch.save
        def dying_save(obj, f):
            real_save(obj, f)
            f.flush()
            f.truncate(f.tell() // 2)  # half of the bytes reached the disk, then the machine died
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        checkpoint.save_checkpoint({{"epoch": 2, "w": torch.zeros(1000)}}, path)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(), timeout=120)
    assert r.returncode == -signal.SIGKILL
    assert (tmp_path / "checkpoint.pt.tmp").exists()  # the torn write went to the temporary file
    with pytest.raises(Exception):
        torch.load(tmp_path / "checkpoint.pt.tmp", weights_only=True)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["w"], torch.arange(1000.0))


# --- resume ------------------------------------------------------------------------------------

def _kill_mid_epoch_2(cmd, run_dir):
    """Start ``cmd``, wait until epoch 1 is checkpointed (its line is printed after the checkpoint and
    metrics.csv are written; progress bars show on a terminal only), let epoch 2 run for 0.1 s, SIGKILL it.
    Returns the seconds epoch 2 ran before the kill."""
    # every checkpoint write pauses 3 s (the test hook): epoch 2 can never be checkpointed before the
    # kill, however fast its steps run, so the kill lands in epoch 2's steps or in its write
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(CODED_TEST_SLOW_CHECKPOINT="3"), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    seen, steps = [], None

    def read():
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.append(chunk)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if b"epoch 1/2:" in b"".join(seen):
            time.sleep(0.1)
            steps = 0.1
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert steps is not None, "the run ended before it could be killed mid-epoch:\n" + b"".join(seen).decode()[-2000:]
    return steps


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """An uninterrupted smoke run, and one killed in the middle of epoch 2 then resumed."""
    root = tmp_path_factory.mktemp("runs")
    whole, resumed = root / "whole", root / "resumed"
    subprocess.run(_cli(whole, "--no-progress"), cwd=REPO, env=_env(), check=True, timeout=300)
    steps = _kill_mid_epoch_2(_cli(resumed), resumed)
    killed_at = load_checkpoint(resumed / "checkpoint.pt")["epoch"]
    subprocess.run(_cli(resumed, "--no-progress"), cwd=REPO, env=_env(), check=True, timeout=300)
    return whole, resumed, killed_at, steps


def test_killed_and_resumed_run_equals_uninterrupted(smoke_runs):
    whole, resumed, killed_at, steps = smoke_runs
    assert killed_at == 1 and steps > 0  # it was killed inside epoch 2, with epoch 1 checkpointed
    a, b = _weights(whole), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows_a, rows_b = (list(csv.DictReader(open(d / "metrics.csv"))) for d in (whole, resumed))
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k != "epoch_time_s"} == {k: v for k, v in rb.items() if k != "epoch_time_s"}


def test_run_folder_contents(smoke_runs):
    from coded_lib.decoders import early_decode
    from coded_lib.train import load_run

    whole = smoke_runs[0]
    cfg = json.loads((whole / "config.json").read_text())
    assert cfg == get_config("smoke", **SMOKE_SETS).to_dict()
    with open(whole / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    model, config = load_run(whole)
    assert config.epochs == 2 and not model.training
    n_blocks = len(model.coded_blocks)
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "code_loss",
                             *[f"early_acc_{i + 1}" for i in range(n_blocks)], "epoch_time_s"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # the last row's validation numbers, recomputed from the loaded weights by a plain loop
    from coded_lib.train import data

    _, val = data.get_datasets("digits", val_subset=config.val_subset)
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        out = model(x, y)
    last = rows[-1]
    assert float(last["val_acc"]) == pytest.approx((out.logits.argmax(1) == y).float().mean().item(), abs=1e-6)
    assert float(last["val_loss"]) == pytest.approx(torch.nn.functional.cross_entropy(out.logits, y).item(), rel=1e-4)
    assert float(last["code_loss"]) == pytest.approx(out.code_loss.item(), rel=1e-4)
    for i, b in enumerate(model.coded_blocks):
        acc = (early_decode(out.energies[i], b.scheme) == y).float().mean().item()
        assert float(last[f"early_acc_{i + 1}"]) == pytest.approx(acc, abs=1e-6)
    ckpt = torch.load(whole / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "epoch"} <= set(ckpt) and ckpt["epoch"] == 2


def test_finished_run_is_not_retrained_and_other_configs_are_refused(smoke_runs):
    from coded_lib.train import ensure_run, train

    whole = smoke_runs[0]
    before = (whole / "checkpoint.pt").stat().st_mtime_ns
    assert ensure_run("smoke", whole, progress=False, **SMOKE_SETS) == whole
    assert (whole / "checkpoint.pt").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match=r"another configuration \(mu: 1.0 -> 2.0\)"):
        train("smoke", whole, progress=False, **{**SMOKE_SETS, "mu": 2.0})
    with pytest.raises(ValueError, match="epochs: 2 -> 3"):
        ensure_run("smoke", whole, progress=False, **{**SMOKE_SETS, "epochs": 3})


def test_default_run_dirs(monkeypatch, tmp_path):
    from coded_lib.train import default_run_dir

    monkeypatch.setenv("CODED_RUNS", str(tmp_path))
    assert default_run_dir("smoke") == tmp_path / "smoke"
    assert default_run_dir("smoke", {"device": "cpu"}) == tmp_path / "smoke"  # where it runs changes nothing
    assert default_run_dir("smoke", {"p_drop": 0.2, "mu": 2.0}) == tmp_path / "smoke-mu=2.0_p_drop=0.2"
    assert default_run_dir("smoke", {"mu": 1.0}) != default_run_dir("smoke", {"mu": 2.0})


# --- distributed -------------------------------------------------------------------------------

DDP_WORKER = """
import os, sys, torch
from coded_lib.train.loop import _place, build_model_for, make_optimizer, train_step, evaluate, train
from coded_lib.train.presets import get_config
from coded_lib.train import data
out = sys.argv[1]
place = _place("cpu")  # gloo, from torchrun's variables
cfg = get_config("smoke", p_drop=0.0, mu=6.0)
torch.manual_seed(0)
model = build_model_for(cfg).eval()  # BatchNorm in eval mode: the same statistics for half and whole batches
net = torch.nn.parallel.DistributedDataParallel(model)
opt, _ = make_optimizer(model, cfg)
g = torch.Generator().manual_seed(1)
x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
half = slice(4 * place.rank, 4 * place.rank + 4)
train_step(net, x[half], y[half], opt, cfg.mu)
_, val = data.get_datasets("digits", val_subset=50)
metrics = evaluate(model, data.make_loader(val, 8, False, rank=place.rank, world_size=place.world), place)
if place.rank == 0:
    torch.save({"model": model.state_dict(), "metrics": metrics}, out + "/ddp.pt")
# and the whole loop, one short epoch in two processes
train("smoke", out + "/run", progress=False, epochs=1, train_subset=64, val_subset=32)
"""


def test_two_processes_make_the_update_of_one(tmp_path):
    from coded_lib.train.loop import Place, build_model_for, evaluate, make_optimizer, train_step
    from coded_lib.train import data

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=REPO,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=str(29500 + os.getpid() % 1000)))
             for r in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]

    cfg = get_config("smoke", p_drop=0.0, mu=6.0)
    torch.manual_seed(0)
    model = build_model_for(cfg).eval()
    opt, _ = make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    train_step(model, x, y, opt, cfg.mu)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(got["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    _, val = data.get_datasets("digits", val_subset=50)
    single = evaluate(model, data.make_loader(val, 8, False), Place(torch.device("cpu"), "cpu"))
    assert got["metrics"] == pytest.approx(single, rel=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 1 and (tmp_path / "run" / "checkpoint.pt").exists()


def _xla_usable():
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return "torch_xla runs here only on Linux x86-64"
    try:
        import importlib.util
        if importlib.util.find_spec("torch_xla") is None:
            return "torch_xla is not installed"
    except ImportError:
        return "torch_xla is not installed"
    return None


@pytest.mark.skipif(_xla_usable() is not None, reason=str(_xla_usable()))
def test_xla_path_trains_one_epoch_on_the_xla_cpu_device(tmp_path):
    run = tmp_path / "xla"
    # one training step and one validation batch: each new graph costs an XLA compilation
    cmd = [sys.executable, "-m", "coded_lib.train", "--preset", "smoke", "--run-dir", str(run), "--no-progress",
           "--set", "device=xla", "--set", "epochs=1", "--set", "batch_size=16", "--set", "train_subset=16",
           "--set", "val_subset=16"]
    # bfloat16 autocast as on a TPU; the fastest (least optimizing) compiler settings of XLA's CPU backend
    env = _env(PJRT_DEVICE="CPU", XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["train_loss"]))
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


# --- it learns ---------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir() and not os.environ.get("CODED_DATA"),
                    reason="Fashion-MNIST not installed (Debian package dataset-fashion-mnist, or CODED_DATA)")
def test_short_fashion_mnist_run_learns(tmp_path, one_thread):
    from coded_lib.train import read_metrics, train

    run = train("fashion_mnist", tmp_path / "fm", progress=False, epochs=2, train_subset=1600, val_subset=400,
                batch_size=32, lr=0.05)
    rows = read_metrics(run)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_loss"] < math.log(10)  # below the loss of a uniform guess
    # chance is 0.1: 0.35 of 400 samples is > 15 standard deviations above it
    assert rows[-1]["val_acc"] > 0.35
