"""Glue shared by the notebooks: parameters, smoke mode, run folders, figures and results.

Every notebook has a papermill ``parameters`` cell with its real defaults, then calls
``setup(globals(), **smoke)``; with ``CODED_SMOKE=1`` (set by ``notebooks/conftest.py`` under nbval) it
runs on the ``smoke`` preset with the notebook's ``smoke`` values, its runs under a temporary ``$CODED_RUNS``.
A notebook then opens the run of its preset (trained first if missing) and writes what it makes into
that run folder: ``figures/``, ``tables/`` and ``results.csv`` (``coded_lib.companion.report.record``).
"""
from __future__ import annotations

import ast
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import report

SMOKE_ENV = "CODED_SMOKE"
EDITION = None  # the committed edition this notebook runs on (setup's ``edition`` parameter), None: its own runs
RUNS_ENV = "CODED_RUNS"
SMOKE_PRESET = "smoke"

# Data sets as a reader knows them, and their full split sizes (train, validation).
DATA_NAMES = {"fashion_mnist": "Fashion-MNIST", "fashion_mnist_rot90": "Fashion-MNIST rotated 90°",
              "digits": "scikit-learn digits", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
              "imagenet": "ImageNet"}
FIG_WIDTH = 7.6  # inches: at 100 dpi about the 772 px of a chapter's output area at 1400 px (see _display_setup)
DATA_SIZES = {"fashion_mnist": (60000, 10000), "fashion_mnist_rot90": (60000, 10000), "digits": (1438, 359),
              "cifar10": (50000, 10000), "cifar100": (50000, 10000), "imagenet": (1281167, 50000)}


def is_smoke() -> bool:
    """True when the environment asks for smoke mode: ``CODED_SMOKE`` 1/true/yes/on (0/false/no/off or unset: no)."""
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value not in ("1", "true", "yes", "on", "", "0", "false", "no", "off"):
        raise ValueError(f"{SMOKE_ENV}={os.environ[SMOKE_ENV]!r} is not understood; allowed: 1, true, yes, on "
                         "(smoke mode) or 0, false, no, off, unset (the real defaults)")
    return value in ("1", "true", "yes", "on")


def setup(namespace: dict, **smoke) -> bool:
    """Finish a notebook's parameters (``namespace``: its ``globals()``, papermill's checked first); returns
    whether this is a smoke run. In smoke mode ``preset`` becomes "smoke", ``run_dir`` None, and each keyword
    of ``smoke`` replaces the parameter of that name (which must exist: a typo would silently test the real
    defaults). On Colab, runs go to /content/runs unless ``CODED_RUNS`` says otherwise. A parameter ``edition``
    ("full") runs the chapter on a committed edition (``edition.open_edition``): nothing is trained."""
    check_parameters(namespace)
    unknown = sorted(k for k in smoke if k not in namespace)
    if unknown:
        raise ValueError(f"smoke values for {unknown}, which are not parameters of this notebook; "
                         f"allowed: {sorted(k for k in namespace if not k.startswith('_'))}")
    global EDITION
    EDITION = None
    smoke_run = is_smoke()
    chosen = None if smoke_run else namespace.get("edition")
    if chosen is not None:  # a committed edition, nothing trained
        from .edition import open_edition

        runs, namespace["preset"] = open_edition(chosen)
        os.environ[RUNS_ENV] = str(runs)
        EDITION = chosen
    if (smoke_run or chosen is not None) and "run_dir" in namespace:
        namespace["run_dir"] = None
    if smoke_run:
        namespace["preset"] = SMOKE_PRESET
        namespace.update(smoke)
        if not os.environ.get(RUNS_ENV):  # never write smoke runs into the real runs/ folder
            os.environ[RUNS_ENV] = tempfile.mkdtemp(prefix="coded_smoke_runs_")
    elif "google.colab" in sys.modules and not os.environ.get(RUNS_ENV):
        os.environ[RUNS_ENV] = "/content/runs"
    _display_setup()
    import torch

    torch.manual_seed(0)
    return smoke_run


def _assignments(source: str) -> dict:
    """name -> value of a cell's top-level ``name = literal`` lines (``...`` for a non-literal value)."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                values[node.targets[0].id] = ...
    return values


def _nullable(source: str) -> set:
    """Parameters whose line in the parameters cell documents None as a value ("# ... None: all of them")."""
    return {m.group(1) for m in re.finditer(r"^(\w+)\s*=[^#\n]*#[^\n]*\bNone\b", source, re.MULTILINE)}


def _finite(value) -> bool:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return all(map(_finite, value))
    return not isinstance(value, float) or math.isfinite(value)


def _as_type_of(name: str, value, default):
    """``value`` (as papermill passed it) in the type of the parameters cell's ``default``, or ValueError."""
    if isinstance(value, str) and not isinstance(default, str):
        try:  # papermill's -p passes lists and dicts as their text: "[9]"
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            if default is not None and default is not ...:
                raise ValueError(f"papermill parameter {name}={value!r} cannot be read as "
                                 f"{type(default).__name__}, the type of its default {default!r}") from None
    if not _finite(value):
        raise ValueError(f"papermill parameter {name}={value!r}: numbers must be finite")
    if default is None or default is ...:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    kinds = (list, tuple) if isinstance(default, (list, tuple)) else (type(default),)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        hint = " (-r name value passes it as a string)" if isinstance(default, str) else ""
        raise ValueError(f"papermill parameter {name}={value!r} is {type(value).__name__}; allowed: "
                         f"{type(default).__name__}, the type of its default {default!r}{hint}")
    return type(default)(value) if isinstance(default, (list, tuple)) else value


def check_parameters(namespace: dict) -> None:
    """Check the parameters papermill injected into a notebook, and parse them to their defaults' types.
    papermill puts ``-p name value`` pairs in a cell of its own ("# Parameters") right after the cell tagged
    ``parameters``, only warns about an unknown name and passes ``-p blocks "[9]"`` as a string. From both
    cells in IPython's input history (``namespace["In"]``), unknown names (typos) raise ValueError naming the
    allowed ones, and each value is parsed to its default's type ("[9]" -> [9]); None is accepted where the
    parameter's comment names it as a value (``n_val = 500  # ...; None: all``)."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return  # not in IPython
    cells = [c for c in history[:-1] if isinstance(c, str)]  # the last one is the cell running now
    injected = [i for i, c in enumerate(cells) if c.startswith("# Parameters\n")]
    if not injected or injected[-1] == 0:
        return
    given = _assignments(cells[injected[-1]])
    defaults = _assignments(cells[injected[-1] - 1])
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"papermill parameter(s) {unknown} are not parameters of this notebook (a typo?); "
                         f"allowed: {sorted(defaults)}")
    nullable = _nullable(cells[injected[-1] - 1])
    for name in given:
        if not (namespace[name] is None and name in nullable):
            namespace[name] = _as_type_of(name, namespace[name], defaults[name])


def _display_setup():
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and "IPKernelApp" in ip.config:
        # the book needs the figures in the executed notebooks, whatever MPLBACKEND the shell exported
        ip.run_line_magic("matplotlib", "inline")
        from IPython.core.pylabtools import print_figure
        from matplotlib_inline.config import InlineBackend

        from .plots import LEGEND_KEY, legend_overlaps, plt

        # a figure shown says in its PNG whether its legends keep off its data (tests/test_book.py reads it); drawn
        # as the inline backend's PNG formatter draws it (IPython's print_figure with its print_figure_kwargs)
        ip.display_formatter.formatters["image/png"].for_type(plt.Figure, lambda fig: print_figure(
            fig, "png", base64=True, metadata={LEGEND_KEY: "; ".join(legend_overlaps(fig)) or "clear"},
            **InlineBackend.instance().print_figure_kwargs))
    import matplotlib
    import pandas as pd

    # figures are drawn at most FIG_WIDTH inches wide at 100 dpi, about the book's text width in
    # pixels, so that 10-11 pt text stays 10-11 pt on the page
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 11, "axes.titlesize": 11,
                                "axes.labelsize": 11, "legend.fontsize": 10, "xtick.labelsize": 10,
                                "ytick.labelsize": 10, "axes.grid": True, "grid.alpha": 0.3})
    pd.set_option("display.max_colwidth", None, "display.width", 200)


# --- runs ----------------------------------------------------------------------------------------

def changed(preset: str, **overrides) -> dict:
    """The overrides that differ from the preset's values, so that equal configurations share one run
    folder (``ensure_run`` names folders after the overrides given)."""
    from ..train.presets import get_config

    base = get_config(preset).to_dict()
    get_config(preset, **overrides)  # unknown fields and bad values fail here, naming what is allowed
    return {k: v for k, v in overrides.items() if base[k] != v}


# The ablations chapter's fixed variants (T-concat; T-detach as appendix E, detaching *instead of* the
# coding loss, with and without skip connections): the notebook trains them, and the GPU edition
# (companion.at_scale) trains the same run folders ahead of it.
ABLATION_VARIANTS = {"sum, coding loss (ours)": {}, "concat, coding loss": {"combine": "concat"},
                     "sum, detach, with skips": {"coding": "detach", "mu": 0.0},
                     "sum, detach, without skips": {"coding": "detach", "mu": 0.0, "skip": False}}


def baseline(preset: str) -> tuple[str, dict]:
    """(preset, overrides) of the plain ResNeXt twin of ``preset``: ``<preset>_baseline`` where it
    exists, else the same recipe with the plain model, mu = 0 and p_drop = 0."""
    from ..train.presets import PRESETS, get_config

    if preset + "_baseline" in PRESETS:
        return preset + "_baseline", {}
    model = get_config(preset).model
    if not model.startswith("coded_"):
        raise ValueError(f"preset {preset!r} trains {model!r}, which is already a plain ResNeXt")
    return preset, changed(preset, model=model.replace("coded_", "", 1), mu=0.0, p_drop=0.0)


def run_folder(preset: str, run_dir=None, **overrides) -> Path:
    """The run folder of ``preset`` with ``overrides`` (not trained)."""
    from ..train import default_run_dir

    return Path(run_dir) if run_dir is not None else default_run_dir(preset, changed(preset, **overrides))


def ensure(preset: str, run_dir=None, **overrides) -> Path:
    """The folder of a finished run (``coded_lib.train.ensure_run``), trained only if missing (on a committed
    edition: never; a run it does not hold is a ValueError)."""
    from ..train import ensure_run

    folder = run_folder(preset, run_dir, **overrides)
    if EDITION is None:
        return ensure_run(preset, folder, progress=not is_smoke(), **changed(preset, **overrides))
    if not (folder / "metrics.csv").exists():
        raise ValueError(f"the {EDITION} edition holds no run {folder.name}; this chapter needs it: run the "
                         "chapter with edition=None to train it")
    return folder


def sweep(preset: str, param: str, values, **base) -> "pd.DataFrame":
    """One finished run per value of ``param`` (reused when it exists, a value equal to the preset's
    shares the preset's folder), and the last row of each run's metrics.csv."""
    import pandas as pd

    from ..analysis import read_final_metrics

    runs = [(value, ensure(preset, **{**base, param: value})) for value in values]
    return pd.DataFrame([{param: value, "run_dir": str(run), **read_final_metrics(run)} for value, run in runs])


# --- outputs -------------------------------------------------------------------------------------

@dataclass
class Folder:
    """Where a notebook writes: figures, tables and the results rows of the book's comparison page;
    ``data`` and ``scale`` name what produced the numbers recorded here (SPEC: every number names both);
    ``config``, where given, the data a linear classifier is measured on as the verdicts' reference."""
    dir: Path
    data: str = ""
    scale: str = ""
    config: object = None

    def save_figure(self, fig, name: str) -> list[Path]:
        """``figures/<name>.png`` and ``.pdf`` in the folder."""
        out = Path(self.dir) / "figures"
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{name}.png", out / f"{name}.pdf"]
        fig.savefig(paths[0], dpi=150, bbox_inches="tight")
        fig.savefig(paths[1], bbox_inches="tight")
        return paths

    def save_table(self, df, name: str) -> Path:
        """``tables/<name>.csv`` in the folder."""
        out = Path(self.dir) / "tables"
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / f"{name}.csv", index=False)
        return out / f"{name}.csv"

    def record(self, id, quantity, ours, verdict=None, note=None, seeds=None, data=None, scale=None,
               accuracy=None) -> None:
        """``report.record`` into this folder, with its data and scale by default; ``verdict``: one of
        ``paper.VERDICTS`` (``coded_lib.companion.claims`` judges it), None for a bare number; ``accuracy``:
        the network's behind it (a ``Run``: its own), weighed against a linear classifier by ``claims.at_this_scale``."""
        from ..analysis.reference import linear_accuracy
        from .claims import Row, at_this_scale

        row = Row(id, quantity, ours, verdict, note or "", seeds, self.accuracy() if accuracy is None else accuracy)
        reference = linear_accuracy(self.config) if row.accuracy is not None and self.config is not None else None
        row = at_this_scale(row, reference)  # a count keeps no accuracy, and so no reference
        report.record(self.dir, data=data or self.data, scale=scale or self.scale,
                      reference=reference if row.accuracy is not None else None, **row.fields())

    def accuracy(self) -> float | None:
        """The test accuracy of this folder's network: none for a folder of several runs or none."""
        return None

    def side_by_side(self, *ids):
        """The paper's numbers beside ours (recorded here) for the given claim ids, styled as the book shows them."""
        return report.claims_table(report.side_by_side(self.dir, ids=list(ids) or None))


@dataclass
class Run(Folder):
    """A finished training run: its folder, model (eval mode, CPU) and Config."""
    model: object = None
    n_eval: int | None = field(default=None)

    def accuracy(self) -> float:
        """The run's final validation accuracy (metrics.csv), on the images a linear classifier is scored on."""
        from ..analysis import read_final_metrics

        return float(read_final_metrics(self.dir)["val_acc"])

    def loaders(self, n_train=None, n_val=None, batch_size: int = 256):
        """(train, validation) DataLoaders of the run's data in a fixed order: the training images with
        the run's training augmentation (the authors choose the binary classifiers' thresholds on the
        training loader as used for training), the validation images without. ``n_train`` / ``n_val``:
        class-balanced subsets of the run's own (fixed seed; None: whole); ``n_eval`` is then the number
        of validation images evaluated (``data`` keeps naming the run's own data, as every chapter's rows)."""
        import torch

        from ..train import data

        train, val = data.datasets_for(self.config)
        train, val = _subset(train, n_train), _subset(val, n_val)
        self.n_eval = len(val)
        # the training images' augmentation draws from torch's global generator (no loader workers):
        # seeded here, a chapter's thresholds do not depend on what ran before in its kernel (e.g.
        # whether its runs were trained there or found finished)
        torch.manual_seed(self.config.seed)
        return (data.make_loader(train, batch_size, train=False), data.make_loader(val, batch_size, train=False))

    def ood_loaders(self, n=None, batch_size: int = 256) -> dict:
        """Out-of-distribution sets of the run's data (``coded_lib.train.data.get_ood``): name -> DataLoader."""
        from ..train import data

        cfg = self.config
        sets = data.get_ood(cfg.dataset, size=n, eval_size=cfg.eval_size, data_dir=cfg.data_dir, download=cfg.download)
        return {name: data.make_loader(ds, batch_size, train=False) for name, ds in sets.items()}


def _subset(ds, n):
    from torch.utils.data import Subset

    from ..train import data

    if n is None or n >= len(ds):
        return ds
    return Subset(ds, data.balanced_subset(data.targets_of(ds), n, 0).tolist())


def describe_data(cfg, n_eval=None) -> str:
    """'Fashion-MNIST: 8000 training images, 2000 validation images' for a Config."""
    full_train, full_val = DATA_SIZES.get(cfg.dataset, (None, None))
    return (f"{DATA_NAMES.get(cfg.dataset, cfg.dataset)}: {cfg.train_subset or full_train} training images, "
            f"{n_eval or cfg.val_subset or full_val} validation images")


def describe_scale(cfg, model=None) -> str:
    """'coded_resnext_mini (0.10 M parameters), 4 epochs, batch 128, μ = 6, p_drop = 0.1' for a Config."""
    from ..models import count_parameters

    size = f" ({count_parameters(model) / 1e6:.2f} M parameters)" if model is not None else ""
    return f"{cfg.model}{size}, {cfg.epochs} epochs, batch {cfg.batch_size}, μ = {cfg.mu:g}, p_drop = {cfg.p_drop:g}"


class Unpublished:
    """The model of an edition's run whose weights the edition does not publish: any use says so."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        raise ValueError(f"the {EDITION} edition publishes the weights of seed 0's coded and plain networks only, "
                         f"not of {self._name}: run the chapter with edition=None to train it")

    def __call__(self, *args, **kwargs):
        self.__getattr__("__call__")


def _edition_model(folder: Path):
    """(model, config) of a run opened from a committed edition (``open_edition``)."""
    import json

    from safetensors.torch import load_file

    from ..train import build_model_for
    from ..train.presets import config_from_dict
    from .edition import WEIGHTS_FILE

    cfg = config_from_dict(json.loads((folder / "config.json").read_text()))
    if not (folder / WEIGHTS_FILE).exists():
        return Unpublished(folder.name), cfg
    model = build_model_for(cfg)
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model.eval(), cfg


def open_run(preset: str, run_dir=None, **overrides) -> Run:
    """The finished run of ``preset`` (trained first if missing), its model loaded on the CPU."""
    from ..train import load_run

    folder = ensure(preset, run_dir, **overrides)
    model, cfg = _edition_model(folder) if EDITION is not None else load_run(folder)
    scale = describe_scale(cfg, None if isinstance(model, Unpublished) else model)
    return Run(dir=folder, data=describe_data(cfg), scale=scale, model=model, config=cfg)


def folder(preset: str, run_dir=None, data: str = "", scale: str = "", config=None) -> Folder:
    """The run folder of ``preset`` as a place to write, without training it (for notebooks that need no
    trained model, or several: coding schemes, architectures, cost, ablations with their ``config``)."""
    return Folder(dir=run_folder(preset, run_dir), data=data, scale=scale, config=config)


def scale_points(preset: str, train_sizes, seeds, n_binary: int | None = None) -> "pd.DataFrame":
    """The scale chapter's trainings (coded and plain, at each training-set size and seed; None: the preset's
    own size), trained if missing, as the per-seed table of ``coded_lib.analysis.scale``: final test accuracy
    of both, and the coded run's binary classifiers' mean precision and F1 against the other classes
    (thresholds from ``n_binary`` training images, measured on the run's whole validation set)."""
    import pandas as pd

    from ..analysis import binary_classifiers, read_final_metrics
    from ..train.presets import get_config

    base_preset, base_overrides = baseline(preset)
    rows = []
    for n in train_sizes:
        for s in seeds:
            coded = open_run(preset, train_subset=n, seed=s) if n is not None else open_run(preset, seed=s)
            plain = ensure(base_preset, **base_overrides, **({} if n is None else {"train_subset": n}), seed=s)
            train_loader, val_loader = coded.loaders(n_train=n_binary)
            table = binary_classifiers(coded.model, train_loader, val_loader).table
            size = n or get_config(preset).train_subset or DATA_SIZES[coded.config.dataset][0]
            rows.append({"train_images": size, "seed": s, "coded_acc": read_final_metrics(coded.dir)["val_acc"],
                         "plain_acc": read_final_metrics(plain)["val_acc"], "precision": table.precision_id.mean(),
                         "f1": table.f1_id.mean()})
    return pd.DataFrame(rows)
