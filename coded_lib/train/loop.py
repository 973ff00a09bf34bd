"""Training a (Coded) ResNeXt: one loop for CPU, CUDA (one or several GPUs) and TPU (torch_xla).

    python -m coded_lib.train --preset fashion_mnist --run-dir runs/fashion_mnist --set epochs=2
    torchrun --nproc_per_node=4 -m coded_lib.train --preset cifar10      # several GPUs (DDP)

The loss is Eq. 6, cross-entropy + mu * (sum over coded blocks of the coding loss, Eq. 5),
minimized by SGD with Nesterov momentum on a cosine schedule stepped once per epoch (SPEC §1.4). A run
folder holds ``config.json`` (the resolved :class:`~coded_lib.train.presets.Config`), ``metrics.csv``
and ``checkpoint.pt`` (rewritten atomically after every epoch). metrics.csv has one row per
epoch: ``lr`` at the epoch's first step, ``train_loss`` (Eq. 6, averaged over the epoch's
steps, with DropSubNN and augmentation), ``train_acc``, the validation ``val_loss``
(cross-entropy), ``val_acc``, ``code_loss`` (the validation coding loss, Eq. 5 summed over
the coded blocks), ``early_acc_1..L`` (each coded block's early decoder, Eq. 7) and
``epoch_time_s`` (training and validation). Accuracies are fractions in [0, 1]. Running the same command again resumes from the checkpoint;
a finished run is not retrained; a run folder with another configuration is refused. The checkpoint
it replaced stays as ``checkpoint.prev.pt``: a damaged checkpoint is reported and the run goes on
from that one; a missing or short metrics.csv is rebuilt from the checkpoint's history.

On the CPU, with one process, a resumed run ends with the same weights as an uninterrupted one:
the data order of an epoch depends on (seed, epoch) only, and the global random states (data
augmentation, DropSubNN) are restored from the checkpoint.

At the speed of its steps (issue 13): Fashion-MNIST, the digits and CIFAR without RandAugment are
held on the device and cropped and flipped there a batch at a time (coded_lib.train.resident; their
draws too depend on (seed, epoch) only); with RandAugment the DataLoader runs timm's on the host
(pinned memory, non-blocking copies on a GPU). A step never waits for the device: the running loss
and accuracy are summed there and read every READ_EVERY steps and at the epoch's end (read_out).
``--set compile=true`` compiles the forward pass and the loss with torch.compile (one graph, compiled
once for training and once for evaluation). On XLA: one process per device (one on Colab's v5e-1),
MpDeviceLoader, ``torch_xla.sync()`` after each step, constant shapes (the last incomplete training
batch is dropped), so that after its first two steps an epoch compiles nothing new.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import hashlib
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data
from .checkpoint import CheckpointError, load_checkpoint, load_latest, rng_state, save_checkpoint, set_rng_state, to_cpu
from .lock import FolderBusy, FolderLock
from .presets import RUNTIME_FIELDS, Config, config_from_dict, get_config, parse_value
from .resident import ResidentBatches, resident

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT, CONFIG, METRICS = "checkpoint.pt", "config.json", "metrics.csv"
# what a training checkpoint holds (a bare state dict or a foreign file is refused by name)
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "config", "history")


# --- devices -----------------------------------------------------------------------------------

def tpu_present() -> bool:
    """A TPU host, judged without importing torch_xla (which prints warnings where there is none).

    TPU VMs up to v4 show /dev/accel*, later ones VFIO devices (checked after CUDA, in resolve_device).
    """
    if os.environ.get("PJRT_DEVICE", "").upper() == "TPU":
        return True
    if any(os.environ.get(k) for k in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE")):
        return True
    return bool(glob.glob("/dev/accel*"))


def _xla_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch_xla") is not None


def resolve_device(name: str) -> str:
    """'auto' -> 'xla' on a TPU host, else 'cuda' when available, else 'cpu'."""
    if name == "auto":
        if tpu_present():
            return "xla"
        if torch.cuda.is_available():
            return "cuda"
        if glob.glob("/dev/vfio/[0-9]*") and _xla_installed():
            return "xla"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; allowed here: 'cpu', 'auto'")
    if name == "xla" and not _xla_installed():
        raise ValueError("device='xla' needs torch_xla (pip install torch_xla); allowed here: 'cpu', 'cuda', 'auto'")
    return name


@dataclasses.dataclass
class Place:
    """Where this process trains: its device, its rank among ``world`` processes, and how they talk."""
    device: torch.device
    kind: str  # "cpu", "cuda" or "xla"
    rank: int = 0
    world: int = 1
    ddp: bool = False  # torch.distributed (launched by torchrun)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _place(kind: str) -> Place:
    if kind == "xla":
        import torch_xla
        import torch_xla.runtime as xr

        return Place(torch_xla.device(), "xla", xr.global_ordinal(), xr.world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if kind == "cuda":
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if kind == "cuda" else "gloo")
        device = torch.device("cuda", local) if kind == "cuda" else torch.device("cpu")
        return Place(device, kind, dist.get_rank(), dist.get_world_size(), ddp=True)
    return Place(torch.device(kind), kind)


def _reduce_sum(t: torch.Tensor, place: Place) -> torch.Tensor:
    """Sum a tensor of metric sums over all processes; returns it on the CPU, ``t`` left as it was
    (the loop reads its running sums every 50 steps and keeps adding to them)."""
    if place.world > 1:
        if place.kind == "xla":
            import torch_xla.core.xla_model as xm

            t = xm.all_reduce(xm.REDUCE_SUM, t)
        else:
            import torch.distributed as dist

            t = t.clone()  # all_reduce sums in place
            dist.all_reduce(t)
    return t.detach().cpu()


def average_bn_stats(model, place: Place) -> None:
    """Average the BatchNorm running statistics over the processes, in place (the authors' timm
    ``--dist-bn reduce``, after every training epoch): each replica normalizes with its own batch, so
    their running statistics drift apart, and evaluation and the checkpoint would see rank 0's alone."""
    if place.world == 1:
        return
    stats = [b for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))]
    if place.kind == "xla":
        import torch_xla.core.xla_model as xm

        xm.all_reduce(xm.REDUCE_SUM, stats, scale=1.0 / place.world)  # in place on the list
    else:
        import torch.distributed as dist

        for t in stats:
            dist.all_reduce(t)
            t.div_(place.world)


def _barrier(place: Place, tag: str) -> None:
    if place.world > 1:
        if place.kind == "xla":
            import torch_xla.core.xla_model as xm

            xm.rendezvous(tag)
        else:
            torch.distributed.barrier()


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --- model, optimizer, schedule ----------------------------------------------------------------

def build_model_for(cfg: Config):
    """The config's model, sized for its data set (classes, input channels)."""
    from .presets import trainable_models

    info = data.INFO[cfg.dataset]
    return trainable_models()[cfg.model](num_classes=info.num_classes, in_channels=info.in_channels,
                                         **cfg.model_overrides())


def lr_at(epoch: int, cfg: Config) -> float:
    """The learning rate of (0-based) ``epoch``, constant over the epoch, as the authors' schedules:
    on CIFAR torch's CosineAnnealingLR(T_max=epochs, eta_min=lr_min) stepped per epoch; on ImageNet
    timm's CosineLRScheduler per epoch: linear warm-up from warmup_lr (epoch 0 runs at warmup_lr),
    then the cosine of the un-shifted epoch over the epochs before the cool-down, then lr_min."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr + epoch * (cfg.lr - cfg.warmup_lr) / cfg.warmup_epochs
    decay = max(cfg.epochs - cfg.cooldown_epochs, 1)
    t = min(epoch, decay)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t / decay))


def make_optimizer(model, cfg: Config):
    """SGD (Nesterov) and a LambdaLR stepped once per epoch (its state resumes exactly).

    ``filter_bias_and_bn``: timm's parameter groups (no weight decay on 1-d parameters, i.e. BN
    weights and biases, nor on biases), as the authors' ImageNet runs; else every parameter decays.
    """
    params = model.parameters()
    if cfg.filter_bias_and_bn:
        from timm.optim import param_groups_weight_decay

        params = param_groups_weight_decay(model, cfg.weight_decay)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_at(epoch, cfg) / cfg.lr)
    return opt, sched


def autocast(place_kind: str, cfg: Config):
    """bfloat16 (or float16) autocast on TPU and GPU; full precision on the CPU."""
    if cfg.amp and place_kind in ("cuda", "xla"):
        return torch.autocast(place_kind, dtype=getattr(torch, cfg.precision))
    return nullcontext()


def model_loss(model, x, y, mu: float, label_smoothing: float = 0.0):
    """(loss of Eq. 6, logits): the forward pass and the loss, what ``compile=true`` compiles."""
    out = model(x, y)
    return F.cross_entropy(out.logits.float(), y, label_smoothing=label_smoothing) + mu * out.code_loss, out.logits


def train_step(model, x, y, optimizer, mu: float, amp=None, scaler=None, xla: bool = False,
               label_smoothing: float = 0.0, loss_fn=model_loss):
    """One SGD step on the loss of Eq. 6 (its cross-entropy with ``label_smoothing``); returns
    (loss, number correct), detached, on the device: nothing here waits for the device.

    ``model`` may be wrapped in DistributedDataParallel: the gradients are then averaged over
    processes, so that two processes on two halves of a batch make the update of one process
    on the whole batch. On XLA, ``xm.optimizer_step`` does the same averaging. ``loss_fn``:
    :func:`model_loss`, or its torch.compile'd version.
    """
    with amp or nullcontext():
        loss, logits = loss_fn(model, x, y, mu, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # float16 on a GPU
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if xla:
            import torch_xla.core.xla_model as xm

            xm.optimizer_step(optimizer)
        else:
            optimizer.step()
    return loss.detach(), (logits.detach().argmax(1) == y).sum()


class NonFiniteLoss(RuntimeError):
    """The loss became nan or inf: the run diverged (stopped before its checkpoint took the epoch in)."""


def check_finite(values: dict, where: str, cfg: Config) -> None:
    """Stop a diverged run. ``values`` are numbers the loop has already read from the device
    (the progress read-out every few steps, the epoch's sums): checking them costs no extra sync."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteLoss(f"{', '.join(f'{k} = {v}' for k, v in bad.items())} {where}: the run diverged. "
                            f"Start a new run (another --run-dir) with a smaller lr (now {cfg.lr:g}) or mu "
                            f"(now {cfg.mu:g}); nothing of the diverged epoch was saved")


# training steps between two read-outs of the running loss and accuracy (each waits for the device)
READ_EVERY = 50


def read_out(sums, place: Place, cfg: Config, where: str, bar=None) -> list[float]:
    """The epoch's running sums [loss * n, correct, n], summed over the processes and read from the
    device: every READ_EVERY steps and at the epoch's end, the training loop's only waits for the
    device. A diverged run stops here."""
    s = _reduce_sum(sums, place).tolist()
    check_finite({"training loss": s[0]}, where, cfg)
    if bar is not None:
        bar.set_postfix(loss=f"{s[0] / s[2]:.3f}", acc=f"{s[1] / s[2]:.3f}")
    return s


def compiled(fn, cfg: Config, kind: str):
    """``fn`` torch.compile'd when ``cfg.compile`` (backend $CODED_COMPILE_BACKEND, default inductor;
    the tests use aot_eager), else ``fn``. XLA compiles its graphs itself: there it is ignored."""
    if not cfg.compile:
        return fn
    if kind == "xla":
        print("compile=true is ignored on XLA (torch_xla compiles the step's graph itself)", file=sys.stderr)
        return fn
    return torch.compile(fn, backend=os.environ.get("CODED_COMPILE_BACKEND", "inductor"))


@torch.no_grad()
def evaluate(model, loader, place: Place, amp=None, forward=None) -> dict:
    """Validation: cross-entropy, accuracy, coding loss (Eq. 5 summed over blocks) and every early decoder's accuracy (Eq. 7).

    ``forward``: the model's compiled version, used for the batches of the first batch's size (the
    last, smaller one runs eagerly: it would compile a second graph)."""
    from ..decoders import early_decode

    model.eval()
    blocks = model.coded_blocks
    # float32 sums (exact counts up to 2^24 samples): TPUs have no float64
    sums = torch.zeros(4 + len(blocks), device=place.device)
    full = None
    for x, y in loader:
        x, y = x.to(place.device, non_blocking=True), y.to(place.device, non_blocking=True)
        full = full or len(y)
        with amp or nullcontext():
            out = (forward if forward is not None and len(y) == full else model)(x, y)
        parts = [torch.ones_like(y, dtype=torch.float32).sum(),
                 F.cross_entropy(out.logits.float(), y, reduction="sum"),
                 (out.logits.argmax(1) == y).sum(),
                 out.code_loss.float() * len(y)]  # the model averages it over the batch
        # check=False: no host read per batch; nan energies come with a nan val_loss, which check_finite reports
        parts += [(early_decode(e, b.scheme, check=False, codewords=b.codewords) == y).sum()
                  for e, b in zip(out.energies, blocks)]
        sums += torch.stack([p.float() for p in parts])
    s = _reduce_sum(sums, place).tolist()
    n = max(s[0], 1.0)
    res = {"val_loss": s[1] / n, "val_acc": s[2] / n, "code_loss": s[3] / n}
    res.update({f"early_acc_{i + 1}": v / n for i, v in enumerate(s[4:])})
    return res


# --- run folders -------------------------------------------------------------------------------

def runs_root() -> Path:
    """``$CODED_RUNS``, else ``runs/`` at the repository root."""
    return Path(os.environ.get("CODED_RUNS") or REPO / "runs")


def default_run_dir(preset: str, overrides: dict | None = None) -> Path:
    """``runs/<preset>``, plus a short suffix naming the overrides that change the result."""
    items = sorted((k, v) for k, v in (overrides or {}).items() if k not in RUNTIME_FIELDS)
    if not items:
        return runs_root() / preset
    suffix = "_".join(f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in items)
    suffix = "".join(c if c.isalnum() or c in "=._-" else "-" for c in suffix)
    if len(suffix) > 48:
        suffix = hashlib.sha1(suffix.encode()).hexdigest()[:10]
    return runs_root() / f"{preset}-{suffix}"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_metrics(path: Path, history: list[dict]) -> None:
    if not history:
        return
    early = sorted((k for k in history[0] if k.startswith("early_acc_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    cols = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "code_loss", *early, "epoch_time_s"]
    lines = [",".join(cols)]
    lines += [",".join(str(row[c]) for c in cols) for row in history]
    _atomic_write_text(path, "\n".join(lines) + "\n")


def read_metrics(run_dir) -> list[dict]:
    """The rows of a run's metrics.csv, as dicts of floats (epoch as int)."""
    with open(Path(run_dir) / METRICS, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def _check_same_run(saved: Config, cfg: Config, run_dir: Path) -> None:
    diff = saved.same_run(cfg)
    if diff:
        changes = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(cfg, k)!r}" for k in diff)
        raise ValueError(f"{run_dir} holds a run with another configuration ({changes}); "
                         "use another --run-dir, or delete the folder to start over")


def _repair_metrics(run_dir: Path, history: list[dict]) -> None:
    """Rewrite metrics.csv from the checkpoint's history when it is missing or has other epochs
    (a process killed between saving the checkpoint and writing the metrics leaves it one row short)."""
    try:
        ok = [r["epoch"] for r in read_metrics(run_dir)] == [r["epoch"] for r in history]
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok and history:
        _write_metrics(run_dir / METRICS, history)
        print(f"{run_dir / METRICS}: rebuilt from the checkpoint's history ({len(history)} epochs)", file=sys.stderr)


def latest_checkpoint(run_dir, repair: bool = True) -> dict | None:
    """The run's newest good checkpoint (falling back to the previous one if it is damaged), or None.

    ``repair``: also rebuild metrics.csv from the checkpoint's history and delete the temporary
    files a killed process left (one process of a run does this, before the others read).
    """
    run_dir = Path(run_dir)
    if not repair:
        path = run_dir / CHECKPOINT
        return load_checkpoint(path, CHECKPOINT_KEYS) if path.exists() else None
    for tmp in run_dir.glob("*.tmp"):  # torn writes of a killed process: never read, so never needed
        tmp.unlink()
    ckpt = load_latest(run_dir / CHECKPOINT, CHECKPOINT_KEYS)
    if ckpt is not None:
        _repair_metrics(run_dir, ckpt["history"])
    return ckpt


def is_finished(run_dir, cfg: Config | None = None) -> bool:
    """True if ``run_dir`` holds a checkpoint of all of its epochs (and of ``cfg``'s run, when given)."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return False
    saved = config_from_dict(ckpt["config"])
    if cfg is not None:
        _check_same_run(saved, cfg, Path(run_dir))
    return ckpt["epoch"] >= saved.epochs


# --- the loop ----------------------------------------------------------------------------------

def _run(cfg: Config, run_dir: Path, kind: str, progress: bool) -> None:
    place = _place(kind)
    if cfg.batch_size % place.world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({place.world})")
    ckpt_path = run_dir / CHECKPOINT
    # the main process repairs the folder (damaged checkpoint, metrics.csv), then the others read it
    ckpt = latest_checkpoint(run_dir) if place.main else None
    _barrier(place, "resume")
    if not place.main:
        ckpt = latest_checkpoint(run_dir, repair=False)
    if ckpt is not None:
        _check_same_run(config_from_dict(ckpt["config"]), cfg, run_dir)
        if ckpt["epoch"] >= cfg.epochs:
            if place.main and progress:
                print(f"{run_dir}: finished ({ckpt['epoch']} epochs), not retrained", file=sys.stderr)
            return
    if place.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(run_dir / CONFIG, json.dumps(cfg.to_dict(), indent=2) + "\n")

    seed_all(cfg.seed)  # every process builds the same initial weights
    model = build_model_for(cfg)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(place.device, memory_format=fmt)

    train_ds, val_ds = data.datasets_for(cfg)
    workers = cfg.num_workers if cfg.num_workers is not None else (0 if kind == "cpu" else min(4, os.cpu_count() or 1))
    per_batch = cfg.batch_size // place.world
    loader_args = dict(seed=cfg.seed, num_workers=workers, rank=place.rank, world_size=place.world,
                       pin_memory=kind == "cuda")
    if resident(cfg):  # on the device once, augmented there (coded_lib.train.resident)
        train_loader = ResidentBatches(train_ds, cfg.dataset, per_batch, cfg.seed, place.device, place.rank, place.world)
    else:
        train_loader = data.make_loader(train_ds, per_batch, True, **loader_args)
    val_loader = data.make_loader(val_ds, per_batch, False, **loader_args)
    steps = len(train_loader)

    net = model
    if place.ddp:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[place.device.index] if kind == "cuda" else None)
    opt, sched = make_optimizer(model, cfg)
    history, start = [], 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start = list(ckpt["history"]), ckpt["epoch"]
    amp = autocast(kind, cfg)
    scaler = torch.amp.GradScaler("cuda") if kind == "cuda" and cfg.amp and cfg.precision == "float16" else None
    if kind == "cuda":
        torch.backends.cudnn.benchmark = True

    generator = getattr(train_loader, "generator", None)  # the DataLoader's; ResidentBatches draws from (seed, epoch)
    if place.world == 1:
        if ckpt is not None:
            set_rng_state(ckpt["rng"], generator)
    train_iter, val_iter = train_loader, val_loader
    if kind == "xla":
        import torch_xla.distributed.parallel_loader as pl

        if not isinstance(train_loader, ResidentBatches):
            train_iter = pl.MpDeviceLoader(train_loader, place.device)
        val_iter = pl.MpDeviceLoader(val_loader, place.device)
    loss_fn, forward = compiled(model_loss, cfg, kind), compiled(model, cfg, kind)

    show = progress and place.main
    # bars only on a terminal: in a notebook (papermill, the book) each refresh would become an
    # output block; the one line per epoch below is printed either way
    bars = show and sys.stderr.isatty()
    epochs_bar = tqdm(total=cfg.epochs, initial=start, desc="epochs", disable=not bars, file=sys.stderr)
    for epoch in range(start, cfg.epochs):
        if place.world > 1:
            # one random stream per process and epoch: gathering every process's states into the
            # checkpoint is not worth it (exact resume is promised for one process only)
            seed_all((cfg.seed * 1000 + epoch) * 1000 + place.rank)
        if kind == "xla":
            import torch_xla.core.xla_model as xm

            xm.set_rng_state((cfg.seed * 1000 + epoch) * 1000 + place.rank)  # DropSubNN masks on the device
        if isinstance(train_loader, ResidentBatches):
            train_loader.set_epoch(epoch)
        else:
            data.set_epoch(train_loader, epoch)
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        net.train()
        sums = torch.zeros(3, device=place.device)  # loss * n, correct, n
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not bars,
                   file=sys.stderr)
        for i, (x, y) in enumerate(train_iter):
            x, y = x.to(place.device, non_blocking=True, memory_format=fmt), y.to(place.device, non_blocking=True)
            loss, correct = train_step(net, x, y, opt, cfg.mu, amp, scaler, xla=kind == "xla",
                                       label_smoothing=cfg.label_smoothing, loss_fn=loss_fn)
            sums += torch.stack([loss * len(y), correct.float(), torch.ones_like(loss) * len(y)])
            if kind == "xla":
                # cut the graph here on every replica: a read-out on rank 0 alone (the progress bar)
                # would otherwise cut it elsewhere there, and replicas running different graphs deadlock
                import torch_xla

                torch_xla.sync()
            bar.update(1)
            if (i + 1) % READ_EVERY == 0 and i + 1 < steps:
                read_out(sums, place, cfg, f"at step {i + 1} of epoch {epoch + 1}", bar if bars else None)
        bar.close()
        sched.step()  # per epoch, as the authors' schedules
        average_bn_stats(model, place)
        s = read_out(sums, place, cfg, f"at the end of epoch {epoch + 1}")
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": s[0] / s[2], "train_acc": s[1] / s[2]}
        row.update(evaluate(model, val_iter, place, amp, forward))
        check_finite({k: row[k] for k in ("train_loss", "val_loss", "code_loss")}, f"in epoch {epoch + 1}", cfg)
        row["epoch_time_s"] = time.perf_counter() - t0
        history.append(row)
        if place.main:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": rng_state(generator), "epoch": epoch + 1, "config": cfg.to_dict(),
                     "history": history}
            save_checkpoint(to_cpu(state), ckpt_path)
            _write_metrics(run_dir / METRICS, history)
        _barrier(place, f"epoch{epoch}")
        epochs_bar.update(1)
        epochs_bar.set_postfix(val_acc=f"{row['val_acc']:.3f}")
        if show:
            early = " ".join(f"{row[k]:.2f}" for k in row if k.startswith("early_acc_"))
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}"
                       f" | val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} code {row['code_loss']:.3f}"
                       + (f" early {early}" if early else "") + f" | {row['epoch_time_s']:.1f} s", file=sys.stderr)
    epochs_bar.close()


def _xla_worker(index: int, cfg_dict: dict, run_dir: str, progress: bool) -> None:
    _run(config_from_dict(cfg_dict), Path(run_dir), "xla", progress)


def _run_folder(run_dir, preset: str, overrides: dict) -> Path:
    """``run_dir`` as a Path, or the default folder when it is None; an empty string is refused
    (it would scatter a run's files over the current folder)."""
    if run_dir is None:
        return default_run_dir(preset, overrides)
    if not str(run_dir).strip():
        raise ValueError(f"run_dir={str(run_dir)!r} is empty; give a folder (e.g. runs/{preset}) "
                         f"or leave it out for the default {default_run_dir(preset, overrides)}")
    return Path(run_dir)


def train(config: Config | str = "fashion_mnist", run_dir=None, progress: bool = True, **overrides) -> Path:
    """Train (or resume, or skip if finished) the run of ``config`` in ``run_dir``; returns the run folder.

    ``config``: a preset name or a Config; ``overrides``: fields to change. On a TPU host every
    core trains (torch_xla's multi-process launch); under torchrun every process trains its
    share of each batch (DistributedDataParallel).
    """
    if isinstance(config, str):
        cfg = get_config(config, **overrides)
    else:
        cfg = config_from_dict({**config.to_dict(), **overrides})
    run_dir = _run_folder(run_dir, cfg.preset, overrides)
    kind = resolve_device(cfg.device)
    # one launch per folder: under torchrun every rank calls train(), and rank 0 holds the lock for all
    held = FolderLock(run_dir, f"training {cfg.preset}") if int(os.environ.get("RANK", "0")) == 0 else nullcontext()
    with held:
        if kind == "xla":
            import torch_xla

            torch_xla.launch(_xla_worker, args=(cfg.to_dict(), str(run_dir), progress))
        else:
            _run(cfg, run_dir, kind, progress)
    return run_dir


def ensure_run(preset: str, run_dir=None, progress: bool = True, **overrides) -> Path:
    """The folder of a finished run of ``preset`` with ``overrides``: trained only if not there yet.

    The default folder is ``runs/<preset>`` plus a suffix naming the overrides (see default_run_dir).
    """
    cfg = get_config(preset, **overrides)
    run_dir = _run_folder(run_dir, preset, overrides)
    if not is_finished(run_dir, cfg):
        train(cfg, run_dir, progress=progress)
    return run_dir


def load_run(run_dir, device="cpu"):
    """(model, config) of a run: the model rebuilt from config.json, weights from the checkpoint, in eval mode.

    The checkpoint's own config must describe the same run as config.json (a checkpoint copied in
    from another run is refused). A damaged checkpoint raises CheckpointError: training the run
    again (``ensure_run`` or the CLI) resumes it from the previous checkpoint.
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train the run first (coded_lib.train.ensure_run)")
    try:
        ckpt = load_checkpoint(path, CHECKPOINT_KEYS)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; rerun its training (ensure_run or python -m coded_lib.train) to resume "
                              "from the previous checkpoint") from None
    saved = config_from_dict(ckpt["config"])
    cfg = config_from_dict(json.loads((run_dir / CONFIG).read_text())) if (run_dir / CONFIG).exists() else saved
    diff = saved.same_run(cfg)
    if diff:
        raise ValueError(f"{path} was trained with another configuration than {run_dir / CONFIG} says ("
                         + ", ".join(f"{k}: {getattr(saved, k)!r} in the checkpoint, {getattr(cfg, k)!r} in config.json"
                                     for k in diff) + "): it was copied from another run; train this run again")
    model = build_model_for(cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), cfg


# --- command line ------------------------------------------------------------------------------

def parse_sets(items: list[str]) -> dict:
    """['mu=2', 'ratios=c3=4/10'] -> {'mu': 2.0, 'ratios': {'c3': '4/10'}}, parsed by each field's type."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(key.strip(), value.strip())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m coded_lib.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="fashion_mnist", help="a preset of coded_lib.train.presets.PRESETS")
    ap.add_argument("--run-dir", default=None, help="run folder (default: runs/<preset>[-overrides])")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field, e.g. --set mu=2 --set ratios=c3=4/10 (repeatable)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars or epoch lines")
    args = ap.parse_args(argv)
    run_dir = args.run_dir
    try:
        overrides = parse_sets(args.sets)
        get_config(args.preset, **overrides)  # reject bad presets and values before any work
        run_dir = _run_folder(args.run_dir, args.preset, overrides)
        train(args.preset, run_dir, progress=not args.no_progress, **overrides)
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to resume {run_dir} from its last checkpoint "
              "(saved after every epoch)", file=sys.stderr)
        sys.exit(130)
    except (ValueError, FileNotFoundError, CheckpointError, NonFiniteLoss, FolderBusy) as e:
        # a user's mistake (a value, a folder, missing data, no GPU) or a diverged run: one line, no
        # traceback; CODED_DEBUG=1 shows it
        if os.environ.get("CODED_DEBUG"):
            raise
        ap.exit(1 if isinstance(e, NonFiniteLoss) else 3 if isinstance(e, FolderBusy) else 2, f"{ap.prog}: error: {e}\n")
    print(run_dir)


if __name__ == "__main__":
    main()
