"""Small training sets held on the device and augmented there, a batch at a time (issue 13).

Fashion-MNIST (47 MB as uint8), the digits and CIFAR (150 MB) fit in any accelerator's memory:
moved there once, their training batches need no loader workers, no per-image transforms and no
host-to-device copy of images. The augmentation is the same as the host's (data.make_transform):
a random crop of the zero-padded image and a horizontal flip with p = 1/2, done for the whole batch
by one gather. RandAugment and random erasing stay timm's, on the host (the authors' way): a
configuration with either uses the DataLoader.

The order and the augmentation of an epoch are drawn by a CPU generator seeded by (seed, epoch)
only, so that a run resumed at an epoch boundary draws what the uninterrupted one drew.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from . import data

RESIDENT = ("fashion_mnist", "fashion_mnist_rot90", "digits", "cifar10", "cifar100")


def resident(cfg) -> bool:
    """Whether ``cfg``'s training set goes to the device (small, and augmented by crop and flip only)."""
    return cfg.dataset in RESIDENT and not cfg.randaugment and not cfg.random_erasing


def uint8_images(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, C, H, W], labels int64 [N]) of a data set of :func:`data.load` (or a Subset of one)."""
    if isinstance(ds, Subset):
        images, labels = uint8_images(ds.dataset)
        idx = torch.as_tensor(ds.indices, dtype=torch.long)
        return images[idx], labels[idx]
    if isinstance(ds, data.ArrayDataset):
        return ds.images, torch.as_tensor(ds.targets)
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(ds.targets)  # CIFAR: HWC


class ResidentBatches:
    """Shuffled, augmented training batches (x float [B, C, H, W] normalized, y [B]) of data set
    ``name``, made on ``device``; this process's share of each epoch (``rank`` of ``world``), the last
    incomplete batch dropped (constant shapes). ``set_epoch`` as a DistributedSampler's."""

    def __init__(self, ds, name: str, batch_size: int, seed: int, device, rank: int = 0, world: int = 1):
        images, labels = uint8_images(ds)
        info = data.INFO[name]
        self.pad, self.flip = data.crop_flip(name)
        self.images = F.pad(images, (self.pad,) * 4).to(device)  # zero padding, as the host's crops
        self.labels = labels.to(device)
        self.to_float = data.ToFloat(info.mean, info.std, device)
        self.size = tuple(images.shape[-2:])
        # the gather's constant offsets (rows, columns, channels), made once
        self.rows, self.cols, self.channels = (torch.arange(n, device=device) for n in (*self.size, images.shape[1]))
        self.device, self.batch_size, self.seed, self.rank, self.world = torch.device(device), batch_size, seed, rank, world
        self.epoch = 0
        self.per_rank = len(labels) // world
        if self.per_rank < batch_size:
            raise ValueError(f"{len(labels)} training images cannot fill one batch of {batch_size} per process "
                             f"({world} processes); allowed: batch_size <= {self.per_rank}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank // self.batch_size

    def draws(self) -> torch.Tensor:
        """The epoch's draws, [4, steps * B] int64: sample index, crop row, crop column, flip (0/1)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=g)[:self.per_rank * self.world][self.rank::self.world]
        crops = torch.randint(0, 2 * self.pad + 1, (2, n), generator=g)
        flips = (torch.rand(n, generator=g) < 0.5).long() * self.flip
        take = order[:len(self) * self.batch_size]
        return torch.stack([take, crops[0, take], crops[1, take], flips[take]])

    def __iter__(self):
        # [steps, 4, B]: each step's draws one contiguous block, copied straight from pinned memory
        draws = self.draws().view(4, len(self), self.batch_size).transpose(0, 1).contiguous()
        if self.device.type == "cuda":
            draws = draws.pin_memory()
        for step in range(len(self)):
            # one small copy per step (on XLA a device slice would be a new graph per step)
            batch = draws[step].to(self.device, non_blocking=True)
            yield self.augment(*batch), self.labels[batch[0]]

    def augment(self, idx, row, col, flip) -> torch.Tensor:
        """Crop (rows row.., columns col..) of the padded images idx, mirrored where flip is 1,
        scaled to [0, 1] and normalized: one gather for the batch."""
        w, ar, ch = self.size[1], self.cols, self.channels
        r = row[:, None] + self.rows
        c = col[:, None] + torch.where(flip[:, None].bool(), w - 1 - ar, ar)
        x = self.images[idx[:, None, None, None], ch[None, :, None, None], r[:, None, :, None], c[:, None, None, :]]
        return self.to_float(x)
