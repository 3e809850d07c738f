"""Training data: decoded images cached as one uint8 tensor, or per-image transforms in workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from workbench.augment.batched import epoch_seed
from workbench.data import ImageDataset

# Above this many bytes the decoded cache is not built and the per-image path is used.
CACHE_BYTES_LIMIT = 4 * 1024**3


def square_uint8(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop: (3, size, size) uint8."""
    w, h = img.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.array(img, dtype=np.uint8).transpose(2, 0, 1)  # a writable copy


def cache_size_for(ds: ImageDataset, input_size: int) -> int:
    """Side of the cached images: the input size, a little more for larger originals."""
    native = ds.meta.get("image_size")
    if native:
        return max(int(native), input_size)
    first = ds[0][0]
    return max(input_size, min(min(first.size), round(input_size * 1.25)))


def decode_to_tensor(ds: ImageDataset, indices: np.ndarray, size: int) -> torch.Tensor:
    """Decode the selected images once into a (N, 3, size, size) uint8 tensor."""
    out = torch.empty((len(indices), 3, size, size), dtype=torch.uint8)
    for j, i in enumerate(indices):
        out[j] = torch.from_numpy(square_uint8(ds[int(i)][0], size))
    return out


class CachedImages(Dataset):
    """Items of a uint8 tensor (N, 3, S, S); augmentation happens later, batched on the device."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: ignore Ctrl-C, then seed as Lightning would.

    A terminal sends SIGINT to the whole process group, but Ctrl-C is the main process's stop
    request: the workers keep serving batches until the run has ended cleanly and the loader
    shuts them down. Lightning only adds its own per-worker seeding (numpy, random) to loaders
    without a ``worker_init_fn``, so this one calls it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def resolve_num_workers(num_workers: int | str, per_image: bool) -> int:
    """``"auto"``: 0 for cached tensors (nothing to parallelise), else cores - 1, at most 8.

    In a notebook on spawn/forkserver platforms workers re-import the dataset and transform by
    module path; ours are importable, so this is safe on every platform.
    """
    if num_workers != "auto":
        n = int(num_workers)
        if n < 0:
            raise ValueError(f"num_workers={num_workers} must be >= 0 or 'auto'.")
        return n
    if not per_image:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(0, min(8, (cores or 1) - 1))
    if sys.platform == "win32" or multiprocessing.get_start_method(allow_none=True) == "spawn":
        n = min(n, 4)  # spawn start-up costs seconds per worker
    return n


class EpochSampler(torch.utils.data.Sampler[int]):
    """A random permutation per epoch, from ``epoch_seed(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch (also the first one after a resume),
    so a resumed run continues with the order of the epoch it resumes in instead of replaying
    the first epoch's.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=gen).tolist())
