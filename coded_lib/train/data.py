"""Data sets by name, with the paper's augmentations (SPEC §1.4, §4).

* ``fashion_mnist``: the embedded default (10 classes, 28x28 grey), read from ``$CODED_DATA``,
  else ``/usr/share/datasets/fashion-mnist/`` (Debian ``dataset-fashion-mnist``), else
  downloaded by torchvision.
* ``digits``: scikit-learn's 8x8 digits resized to 28x28 and scaled like Fashion-MNIST: an
  (easy) out-of-distribution set for Fashion-MNIST and a tiny set for tests.
* ``fashion_mnist_rot90``: Fashion-MNIST rotated by 90 degrees, a harder OOD set.
* ``cifar10``, ``cifar100`` (torchvision; downloaded only with ``download=True`` or
  ``CODED_DOWNLOAD=1``), each the other's OOD set; ``imagenet`` from an ImageFolder root
  (``$IMAGENET_DIR`` or ``data_dir``) holding ``train/`` and ``val/``.

RandAugment strings are timm's (M on timm's 0-10 scale, as the authors used:
``rand-m4-n3``, ``rand-m2-n1``, ``rand-m7-n2-mstd0.5``); torchvision's RandAugment has a
different magnitude scale and no magnitude noise.
"""
from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from torchvision import transforms as T

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass(frozen=True)
class Info:
    num_classes: int
    in_channels: int
    size: int  # native image size (ImageNet: the paper's training size)
    mean: tuple
    std: tuple


_FASHION = Info(10, 1, 28, (0.2860,), (0.3530,))
INFO = {
    "fashion_mnist": _FASHION,
    "fashion_mnist_rot90": _FASHION,
    "digits": _FASHION,  # scaled like Fashion-MNIST so that it can be fed to the same model
    # the authors' constants (the CIFAR-10 std is the widely copied (0.2023, 0.1994, 0.2010), not the
    # data set's per-pixel std (0.2470, 0.2435, 0.2616))
    "cifar10": Info(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": Info(100, 3, 32, (0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762)),
    "imagenet": Info(1000, 3, 160, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# the paper's OOD negatives for CIFAR (F-binary); ours for Fashion-MNIST (SPEC §4)
OOD = {"fashion_mnist": ("digits", "fashion_mnist_rot90"), "cifar10": ("cifar100",), "cifar100": ("cifar10",),
       "digits": ("fashion_mnist",), "fashion_mnist_rot90": ("fashion_mnist",), "imagenet": ()}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


def _check_name(name: str) -> Info:
    if name not in INFO:
        raise ValueError(f"unknown data set {name!r}; allowed: {sorted(INFO)}")
    return INFO[name]


def class_names(name: str, data_dir: str | None = None) -> tuple[str, ...]:
    """Class names in label order (ImageNet: the folder names of the ImageFolder root)."""
    _check_name(name)
    if name in ("fashion_mnist", "fashion_mnist_rot90"):
        return FASHION_CLASSES
    if name == "digits":
        return tuple(str(i) for i in range(10))
    if name == "cifar10":
        return CIFAR10_CLASSES
    if name == "cifar100":
        return CIFAR100_CLASSES
    return tuple(sorted(p.name for p in (_imagenet_root(data_dir) / "train").iterdir() if p.is_dir()))


# --- raw images --------------------------------------------------------------------------------

class ArrayDataset(Dataset):
    """Grey uint8 images [N, H, W] and labels; returns (transform(uint8 tensor [1, H, W]), label)."""

    def __init__(self, images: np.ndarray, targets, transform=None):
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8))[:, None]  # a writable copy
        self.targets, self.transform = [int(t) for t in targets], transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img = self.images[i]
        return (self.transform(img) if self.transform else img), self.targets[i]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST's format, optionally gzipped): magic 0x0000 0x08 ndim, big-endian sizes, bytes."""
    path = Path(path)
    with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for p in (folder / (stem + ".gz"), folder / stem):
        if p.is_file():
            return p
    return None


def _default_root(data_dir: str | None) -> Path:
    return Path(data_dir or os.environ.get("CODED_DATA") or Path.home() / ".cache" / "coded_lib" / "data")


def find_fashion_mnist(data_dir: str | None = None) -> Path:
    """The folder holding Fashion-MNIST's four idx files, downloading them with torchvision if none has them."""
    roots = [Path(d) for d in (data_dir, os.environ.get("CODED_DATA")) if d]
    candidates = [p for r in roots for p in (r, r / "fashion-mnist", r / "FashionMNIST" / "raw")]
    candidates += [FASHION_DIR, _default_root(None) / "FashionMNIST" / "raw"]
    for folder in candidates:
        if all(_idx_file(folder, s) for pair in FASHION_FILES.values() for s in pair):
            if roots and not any(folder.is_relative_to(r) for r in roots):
                # deliberate fallback (a Colab notebook's data_dir may not exist on a laptop), but said aloud
                warnings.warn(f"no Fashion-MNIST idx files in {' or '.join(map(str, roots))} (data_dir / CODED_DATA); "
                              f"reading {folder} instead", stacklevel=2)
            return folder
    # torchvision's FashionMNIST only reads its own layout (root/FashionMNIST/raw, unpacked files),
    # not the Debian package's folder of .gz files, so it is used for the download alone
    from torchvision.datasets import FashionMNIST

    root = _default_root(data_dir)
    try:
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except Exception as e:  # no network: say what fixes it
        raise FileNotFoundError(
            "Fashion-MNIST not found in " + ", ".join(map(str, candidates)) + f" and the download failed ({e}). "
            "Install it with `sudo apt-get install dataset-fashion-mnist`, or set CODED_DATA to a folder holding "
            "the four idx files (train-images-idx3-ubyte.gz, ...), or connect to the internet.") from None
    return root / "FashionMNIST" / "raw"


def _fashion_arrays(split: str, data_dir: str | None):
    folder = find_fashion_mnist(data_dir)
    images, labels = (read_idx(_idx_file(folder, s)) for s in FASHION_FILES[split])
    return images, labels


def _digits_arrays(split: str):
    """scikit-learn's digits (0..16, 8x8) as 28x28 uint8 (0..255), split 80/20 by a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float()[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    images = (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    order = np.random.default_rng(0).permutation(len(images))  # fixed: the split never depends on a run's seed
    n_val = len(images) // 5
    idx = np.sort(order[n_val:] if split == "train" else order[:n_val])
    return images[idx], d.target[idx]


def _imagenet_root(data_dir: str | None) -> Path:
    root = data_dir or os.environ.get("IMAGENET_DIR")
    if not root or not (Path(root) / "train").is_dir() or not (Path(root) / "val").is_dir():
        raise FileNotFoundError(
            f"ImageNet not found (root {root!r}): set IMAGENET_DIR, or --set data_dir=PATH, to a folder with "
            "train/ and val/ in torchvision ImageFolder layout (one sub-folder per class).")
    return Path(root)


def _cifar(name: str, split: str, transform, data_dir: str | None, download: bool):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    root = _default_root(data_dir)
    download = download or os.environ.get("CODED_DOWNLOAD", "") not in ("", "0")
    try:
        return cls(str(root), train=split == "train", transform=transform, download=download)
    except RuntimeError:
        if download:
            raise
        raise FileNotFoundError(
            f"{name} not found under {root}. Download it with `--set download=true` (Python: download=True, or "
            f"env CODED_DOWNLOAD=1), or set CODED_DATA / --set data_dir=PATH to a folder holding "
            f"{cls.base_folder}/.") from None


def load(name: str, split: str, transform=None, data_dir: str | None = None, download: bool = False) -> Dataset:
    """One split ("train" or "val") of a data set; has ``.targets``.

    ``transform`` gets PIL images (CIFAR, ImageNet) or uint8 tensors [1, 28, 28] (the grey sets).
    """
    _check_name(name)
    if split not in ("train", "val"):
        raise ValueError(f"split={split!r}; allowed: 'train', 'val'")
    if name in ("fashion_mnist", "fashion_mnist_rot90"):
        images, labels = _fashion_arrays(split, data_dir)
        if name == "fashion_mnist_rot90":
            images = np.ascontiguousarray(np.rot90(images, k=1, axes=(1, 2)))
        return ArrayDataset(images, labels, transform)
    if name == "digits":
        return ArrayDataset(*_digits_arrays(split), transform)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, split, transform, data_dir, download)
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(_imagenet_root(data_dir) / split), transform=transform)


# --- transforms --------------------------------------------------------------------------------

def _posterize(img, bits_to_keep, **kwargs):
    """timm's Posterize, except that 0 bits gives a black image.

    timm keeps int(0.4 * M) bits: 1 at CIFAR-10's M = 4, 0 at CIFAR-100's M = 2. Pillow before 12
    kept no bit there (a black image), which is what the authors' runs got; Pillow >= 12 rejects 0 bits.
    """
    from timm.data.auto_augment import posterize

    return Image.new(img.mode, img.size) if bits_to_keep == 0 else posterize(img, bits_to_keep, **kwargs)


def _with_old_posterize(randaugment):
    """timm's RandAugment ``randaugment`` with its 'Posterize' ops replaced by :func:`_posterize`, in place."""
    for op in randaugment.ops:
        if op.name == "Posterize":
            op.aug_fn = _posterize
    return randaugment


def _randaugment(config: str, size: int, mean) -> object:
    from timm.data import rand_augment_transform  # timm is slow to import: only when asked for

    # fill colour of the geometric ops; grey images need a one-element tuple
    hparams = dict(translate_const=int(size * 0.45), img_mean=tuple(min(255, round(255 * m)) for m in mean))
    return _with_old_posterize(rand_augment_transform(config, hparams))


def make_transform(name: str, train: bool, randaugment: str | None = None, random_erasing: float = 0.0,
                   random_erasing_count: int = 1, train_size: int | None = None, eval_size: int | None = None):
    """The paper's transforms: ``train`` True augments, False only converts and normalizes."""
    info = _check_name(name)
    if name == "imagenet":
        from timm.data import create_transform

        if train:
            # timm's recipe (the authors'): random-resized-crop, flip, RandAugment (colour jitter is
            # off when RandAugment is on), random erasing in "pixel" mode
            from timm.data.auto_augment import RandAugment

            tf = create_transform(train_size or 160, is_training=True, auto_augment=randaugment,
                                  re_prob=random_erasing, re_mode="pixel", re_count=random_erasing_count,
                                  interpolation="random", mean=info.mean, std=info.std)
            for t in tf.transforms:
                if isinstance(t, RandAugment):
                    _with_old_posterize(t)
            return tf
        return create_transform(eval_size or 224, is_training=False, interpolation="bicubic", crop_pct=0.875,
                                mean=info.mean, std=info.std)
    if name.startswith("cifar"):
        steps = []
        if train:
            # RandAugment first, then the pad-4 crop and the flip: the authors' code (their paper's
            # text lists them the other way round)
            if randaugment:
                steps.append(_randaugment(randaugment, info.size, info.mean))
            steps += [T.RandomCrop(info.size, padding=crop_flip(name)[0]), T.RandomHorizontalFlip()]
        steps += [T.ToTensor(), T.Normalize(info.mean, info.std)]
    else:
        # 28x28 grey tensors: torchvision's per-image transforms cost ~10x the work here
        steps = []
        if train:
            if randaugment:  # first, as on CIFAR
                steps += [T.ToPILImage(), _randaugment(randaugment, info.size, info.mean), T.PILToTensor()]
            steps.append(PadCropFlip(*crop_flip(name)))
        steps.append(ToFloat(info.mean, info.std))
    if train and random_erasing > 0:
        from timm.data.random_erasing import RandomErasing

        steps.append(RandomErasing(random_erasing, mode="pixel", max_count=random_erasing_count, device="cpu"))
    return T.Compose(steps)


def crop_flip(name: str) -> tuple[int, bool]:
    """The training crop's zero padding (the paper's 4 on CIFAR, 2 on the 28x28 grey sets) and whether
    a horizontal flip is drawn (not on digits: a mirrored digit is another symbol)."""
    return (4 if name.startswith("cifar") else 2), name != "digits"


class PadCropFlip:
    """Random crop of a zero-padded uint8 image [C, H, W] back to H x W, then a horizontal flip with p = 1/2."""

    def __init__(self, pad: int, flip: bool = True):
        self.pad, self.flip = pad, flip

    def __call__(self, x):
        h, w = x.shape[-2:]
        i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        x = torch.nn.functional.pad(x, (self.pad,) * 4)[..., i:i + h, j:j + w]
        return x.flip(-1) if self.flip and torch.rand(()) < 0.5 else x


class ToFloat:
    """uint8 [C, H, W] (or a batch [B, C, H, W], on ``device``) -> float, scaled to [0, 1] and
    normalized by the data set's mean and std."""

    def __init__(self, mean, std, device=None):
        self.mean = torch.tensor(mean, device=device).view(-1, 1, 1)
        self.std = torch.tensor(std, device=device).view(-1, 1, 1)

    def __call__(self, x):
        return (x.float() / 255 - self.mean) / self.std


# --- subsets, data sets, loaders ---------------------------------------------------------------

def balanced_subset(targets, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` samples, as equal in number per class as possible, chosen at random by ``seed``."""
    targets = np.asarray(targets)
    if not 0 < n <= len(targets):
        raise ValueError(f"subset size {n} is not allowed; allowed: 1 .. {len(targets)} (the data set's size)")
    order = np.random.default_rng(seed).permutation(len(targets))
    rank = np.empty(len(targets), dtype=np.int64)
    for c in np.unique(targets):
        members = order[targets[order] == c]
        rank[members] = np.arange(len(members))
    # round-robin over the classes: every class's i-th pick comes before any class's (i+1)-th
    chosen = order[np.argsort(rank[order], kind="stable")][:n]
    return np.sort(chosen)


def targets_of(ds: Dataset) -> np.ndarray:
    """Labels of a data set built here (a Subset's are those of its indices)."""
    if isinstance(ds, Subset):
        return targets_of(ds.dataset)[np.asarray(ds.indices)]
    return np.asarray(ds.targets)


def get_datasets(name: str, train_subset: int | None = None, val_subset: int | None = None, seed: int = 0,
                 augment: bool = True, randaugment: str | None = None, random_erasing: float = 0.0,
                 random_erasing_count: int = 1, train_size: int | None = None, eval_size: int | None = None,
                 data_dir: str | None = None, download: bool = False) -> tuple[Dataset, Dataset]:
    """(train, val) of data set ``name``.

    ``augment`` False gives the training set with the evaluation transform (for analyses that pick
    thresholds on training data). ``train_subset`` draws a class-balanced subset with ``seed``;
    ``val_subset`` one with a fixed seed, so that runs with different seeds share a validation set.
    """
    tf = dict(randaugment=randaugment, random_erasing=random_erasing, random_erasing_count=random_erasing_count,
              train_size=train_size, eval_size=eval_size)
    train = load(name, "train", make_transform(name, augment, **tf), data_dir, download)
    val = load(name, "val", make_transform(name, False, **tf), data_dir, download)
    if train_subset is not None:
        train = Subset(train, balanced_subset(targets_of(train), train_subset, seed).tolist())
    if val_subset is not None:
        val = Subset(val, balanced_subset(targets_of(val), val_subset, 0).tolist())
    return train, val


def datasets_for(cfg) -> tuple[Dataset, Dataset]:
    """(train, val) of a training Config, as its run trains on them (augmentation and all)."""
    return get_datasets(cfg.dataset, cfg.train_subset, cfg.val_subset, cfg.seed, augment=True,
                        randaugment=cfg.randaugment, random_erasing=cfg.random_erasing,
                        random_erasing_count=cfg.random_erasing_count, train_size=cfg.train_size,
                        eval_size=cfg.eval_size, data_dir=cfg.data_dir, download=cfg.download)


def get_ood(name: str, size: int | None = None, eval_size: int | None = None, data_dir: str | None = None,
            download: bool = False) -> dict[str, Dataset]:
    """Out-of-distribution negatives for data set ``name`` (OOD name -> data set), with ``name``'s evaluation transform.

    Fashion-MNIST: all of scikit-learn's digits (an easy OOD set) and the rotated Fashion-MNIST test
    set (harder). CIFAR-10 and CIFAR-100: each other's validation set (the paper's). ``size``: a
    class-balanced subset of each, fixed seed.
    """
    _check_name(name)
    tf = make_transform(name, False, eval_size=eval_size)
    out = {}
    for ood in OOD[name]:
        if ood == "digits":  # every digit: none of them is used for training
            train, val = (load("digits", s, tf) for s in ("train", "val"))
            ds = torch.utils.data.ConcatDataset([train, val])
            ds.targets = train.targets + val.targets
        else:
            ds = load(ood, "val", tf, data_dir, download)
        if size is not None and size < len(ds):
            ds = Subset(ds, balanced_subset(targets_of(ds), size, 0).tolist())
        out[ood] = ds
    return out


class ShardSampler(Sampler):
    """Indices rank, rank + world, ... in order: an evaluation shard, without DistributedSampler's padding."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self):
        return len(range(self.rank, self.n, self.world_size))


def make_loader(ds: Dataset, batch_size: int, train: bool, seed: int = 0, num_workers: int = 0, rank: int = 0,
                world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """A DataLoader of per-process batches. ``train``: shuffled by (seed, epoch), see :func:`set_epoch`.

    Training batches come from DistributedSampler even in one process: its order is a function of
    (seed, epoch) only, which is what makes a resume at an epoch boundary exact.
    """
    if train:
        sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = ShardSampler(len(ds), rank, world_size)
    # drop the last, smaller batch in training (an XLA device would compile a second graph for it)
    drop_last = train and len(sampler) >= batch_size
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
                      pin_memory=pin_memory, generator=gen)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the loader's order and its workers' random seeds functions of (seed, epoch)."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
        loader.generator.manual_seed(sampler.seed * 100_003 + epoch)
