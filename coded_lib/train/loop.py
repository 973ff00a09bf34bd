"""Training a (Coded) ResNeXt: one loop for CPU, CUDA (one or several GPUs) and TPU (torch_xla).

    python -m coded_lib.train --preset fashion_mnist --run-dir runs/fashion_mnist --set epochs=2
    torchrun --nproc_per_node=4 -m coded_lib.train --preset cifar10      # several GPUs (DDP)

The loss is Eq. 6, cross-entropy + mu * (sum over coded blocks of the coding loss, Eq. 5),
minimized by SGD with Nesterov momentum on a per-iteration cosine schedule (SPEC §1.4). A run
folder holds ``config.json`` (the resolved :class:`~coded_lib.train.presets.Config`), ``metrics.csv``
and ``checkpoint.pt`` (rewritten atomically after every epoch). metrics.csv has one row per
epoch: ``lr`` at the epoch's first step, ``train_loss`` (Eq. 6, averaged over the epoch's
steps, with DropSubNN and augmentation), ``train_acc``, the validation ``val_loss``
(cross-entropy), ``val_acc``, ``code_loss`` (the validation coding loss, Eq. 5 summed over
the coded blocks), ``early_acc_1..L`` (each coded block's early decoder, Eq. 7) and
``epoch_time_s`` (training and validation). Accuracies are fractions in [0, 1]. Running the same command again resumes from the checkpoint;
a finished run is not retrained; a run folder with another configuration is refused.

On the CPU, with one process, a resumed run ends with the same weights as an uninterrupted one:
the data order of an epoch depends on (seed, epoch) only, and the global random states (data
augmentation, DropSubNN) are restored from the checkpoint.
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
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, to_cpu
from .presets import RUNTIME_FIELDS, Config, config_from_dict, get_config, parse_value

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT, CONFIG, METRICS = "checkpoint.pt", "config.json", "metrics.csv"


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
    """Sum a tensor of metric sums over all processes; returns it on the CPU."""
    if place.world > 1:
        if place.kind == "xla":
            import torch_xla.core.xla_model as xm

            t = xm.all_reduce(xm.REDUCE_SUM, t)
        else:
            import torch.distributed as dist

            dist.all_reduce(t)
    return t.detach().cpu()


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
    from ..models import build_model

    info = data.INFO[cfg.dataset]
    return build_model(cfg.model, num_classes=info.num_classes, in_channels=info.in_channels,
                       **cfg.model_overrides())


def lr_factor(step: int, cfg: Config, steps_per_epoch: int) -> float:
    """lr(step) / cfg.lr: linear warm-up, cosine from lr to lr_min, then lr_min for the cool-down."""
    warm = cfg.warmup_epochs * steps_per_epoch
    decay = (cfg.epochs - cfg.warmup_epochs - cfg.cooldown_epochs) * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    t = min(step - warm, decay)
    lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t / max(decay, 1)))
    return lr / cfg.lr


def make_optimizer(model, cfg: Config, steps_per_epoch: int):
    """SGD (Nesterov) and a LambdaLR stepped once per iteration, so that its state resumes exactly."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, steps_per_epoch))
    return opt, sched


def autocast(place_kind: str, cfg: Config):
    """bfloat16 (or float16) autocast on TPU and GPU; full precision on the CPU."""
    if cfg.amp and place_kind in ("cuda", "xla"):
        return torch.autocast(place_kind, dtype=getattr(torch, cfg.precision))
    return nullcontext()


def train_step(model, x, y, optimizer, mu: float, amp=None, scaler=None, xla: bool = False):
    """One SGD step on the loss of Eq. 6; returns (loss, number correct), detached, on the device.

    ``model`` may be wrapped in DistributedDataParallel: the gradients are then averaged over
    processes, so that two processes on two halves of a batch make the update of one process
    on the whole batch. On XLA, ``xm.optimizer_step`` does the same averaging.
    """
    with amp or nullcontext():
        out = model(x, y)
    loss = F.cross_entropy(out.logits.float(), y) + mu * out.code_loss
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
    return loss.detach(), (out.logits.detach().argmax(1) == y).sum()


@torch.no_grad()
def evaluate(model, loader, place: Place, amp=None) -> dict:
    """Validation: cross-entropy, accuracy, coding loss (Eq. 5 summed over blocks) and every early decoder's accuracy (Eq. 7)."""
    from ..decoders import early_decode

    model.eval()
    blocks = model.coded_blocks
    # float32 sums (exact counts up to 2^24 samples): TPUs have no float64
    sums = torch.zeros(4 + len(blocks), device=place.device)
    for x, y in loader:
        x, y = x.to(place.device, non_blocking=True), y.to(place.device, non_blocking=True)
        with amp or nullcontext():
            out = model(x, y)
        parts = [torch.ones_like(y, dtype=torch.float32).sum(),
                 F.cross_entropy(out.logits.float(), y, reduction="sum"),
                 (out.logits.argmax(1) == y).sum(),
                 out.code_loss.float() * len(y)]  # the model averages it over the batch
        parts += [(early_decode(e, b.scheme) == y).sum() for e, b in zip(out.energies, blocks)]
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


def is_finished(run_dir, cfg: Config | None = None) -> bool:
    """True if ``run_dir`` holds a checkpoint of all of its epochs (and of ``cfg``'s run, when given)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return False
    ckpt = load_checkpoint(path)
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
    ckpt = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
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
    model.to(place.device)

    train_ds, val_ds = data.get_datasets(
        cfg.dataset, cfg.train_subset, cfg.val_subset, cfg.seed, augment=True, randaugment=cfg.randaugment,
        random_erasing=cfg.random_erasing, random_erasing_count=cfg.random_erasing_count,
        train_size=cfg.train_size, eval_size=cfg.eval_size, data_dir=cfg.data_dir, download=cfg.download)
    workers = cfg.num_workers if cfg.num_workers is not None else (0 if kind == "cpu" else min(4, os.cpu_count() or 1))
    per_batch = cfg.batch_size // place.world
    loader_args = dict(seed=cfg.seed, num_workers=workers, rank=place.rank, world_size=place.world,
                       pin_memory=kind == "cuda")
    train_loader = data.make_loader(train_ds, per_batch, True, **loader_args)
    val_loader = data.make_loader(val_ds, per_batch, False, **loader_args)
    steps = len(train_loader)

    net = model
    if place.ddp:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[place.device.index] if kind == "cuda" else None)
    opt, sched = make_optimizer(model, cfg, steps)
    history, start = [], 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start = list(ckpt["history"]), ckpt["epoch"]
    amp = autocast(kind, cfg)
    scaler = torch.amp.GradScaler("cuda") if kind == "cuda" and cfg.amp and cfg.precision == "float16" else None
    if kind == "cuda":
        torch.backends.cudnn.benchmark = True

    if place.world == 1:
        if ckpt is not None:
            set_rng_state(ckpt["rng"], train_loader.generator)
    train_iter, val_iter = train_loader, val_loader
    if kind == "xla":
        import torch_xla.distributed.parallel_loader as pl

        train_iter = pl.MpDeviceLoader(train_loader, place.device)
        val_iter = pl.MpDeviceLoader(val_loader, place.device)

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
        data.set_epoch(train_loader, epoch)
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        net.train()
        sums = torch.zeros(3, device=place.device)  # loss * n, correct, n
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not bars,
                   file=sys.stderr)
        for i, (x, y) in enumerate(train_iter):
            x, y = x.to(place.device, non_blocking=True), y.to(place.device, non_blocking=True)
            loss, correct = train_step(net, x, y, opt, cfg.mu, amp, scaler, xla=kind == "xla")
            sched.step()
            sums += torch.stack([loss * len(y), correct.float(), torch.ones_like(loss) * len(y)])
            if kind == "xla":
                # cut the graph here on every replica: a read-out on rank 0 alone (the progress bar)
                # would otherwise cut it elsewhere there, and replicas running different graphs deadlock
                import torch_xla

                torch_xla.sync()
            bar.update(1)
            if bars and (i % 10 == 9 or i == steps - 1):  # .item() waits for the device: not every step
                s = sums.tolist()
                bar.set_postfix(loss=f"{s[0] / s[2]:.3f}", acc=f"{s[1] / s[2]:.3f}")
        bar.close()
        s = _reduce_sum(sums, place).tolist()
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": s[0] / s[2], "train_acc": s[1] / s[2]}
        row.update(evaluate(model, val_iter, place, amp))
        row["epoch_time_s"] = time.perf_counter() - t0
        history.append(row)
        if place.main:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": rng_state(train_loader.generator), "epoch": epoch + 1, "config": cfg.to_dict(),
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
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg.preset, overrides)
    kind = resolve_device(cfg.device)
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
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(preset, overrides)
    if not is_finished(run_dir, cfg):
        train(cfg, run_dir, progress=progress)
    return run_dir


def load_run(run_dir, device="cpu"):
    """(model, config) of a run: the model rebuilt from config.json, weights from the checkpoint, in eval mode."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise FileNotFoundError(f"{run_dir / CHECKPOINT} does not exist: train the run first (coded_lib.train.ensure_run)")
    cfg = config_from_dict(json.loads((run_dir / CONFIG).read_text()))
    model = build_model_for(cfg)
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT)["model"])
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
    try:
        overrides = parse_sets(args.sets)
        get_config(args.preset, **overrides)  # reject bad presets and values before any work
    except ValueError as e:
        ap.error(str(e))
    run_dir = train(args.preset, args.run_dir, progress=not args.no_progress, **overrides)
    print(run_dir)


if __name__ == "__main__":
    main()
