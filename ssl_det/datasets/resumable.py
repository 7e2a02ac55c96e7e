"""Data loading that a resumed run continues exactly, without loading what it skips.

Two pieces, put in place by ssl_det's ``IterBasedTrainLoop`` around whatever sampler, batch
sampler and dataset a config names:

* :class:`ResumableBatchSampler` numbers every sample it hands out: the ``j``-th sample of
  the ``b``-th batch since iteration 0 is draw ``(b, j)`` and carries a seed derived from
  ``(seed, rank, b, j)`` (:class:`DrawIndex`, an ``int``). To resume at iteration ``k`` it
  fast-forwards ``k`` batches through the index samplers only (epoch boundaries and
  ``set_epoch`` included), so no image or point cloud is read for them: mmengine's loop
  instead loads and decodes every skipped batch again ("Advance dataloader N steps").
* :class:`SeededDataset` seeds ``random``, ``numpy`` and ``torch`` from the draw's seed
  before the pipeline transforms the sample, in whichever worker it lands. A sample's
  augmentation therefore depends on its draw alone, not on which worker processed it or how
  many samples that worker saw before, which is what makes the continuation equal to the
  uninterrupted run.
"""
import random
from typing import Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import get_dist_info
from torch.utils.data import BatchSampler, Sampler, get_worker_info

from ssl_det.registry import DATA_SAMPLERS, DATASETS

_MASK = (1 << 63) - 1


class DrawIndex(int):
    """A dataset index that also carries the seed of its draw (pickles to workers)."""

    def __new__(cls, index: int, seed: int) -> 'DrawIndex':
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self):
        return DrawIndex, (int(self), self.seed)


def draw_seed(seed: int, rank: int, batch: int, position: int) -> int:
    """A 63-bit seed for sample ``position`` of batch ``batch`` on ``rank`` (SplitMix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + rank * 0xBF58476D1CE4E5B9 + batch * 0x94D049BB133111EB
         + position) & ((1 << 64) - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    return x & _MASK


@DATA_SAMPLERS.register_module()
class ResumableBatchSampler(Sampler):
    """Batches of :class:`DrawIndex` from an inner batch sampler, with fast-forward.

    Args:
        sampler (Sampler): The index sampler (``DefaultSampler``, ``InfiniteSampler``,
            ``MultiSourceSampler``, ...). ``set_epoch`` goes to it, as mmengine's loop does.
        batch_size (int): Samples per batch when ``batch_sampler`` is None.
        batch_sampler (dict | Sampler, optional): The config's batch sampler (e.g. mmdet's
            ``AspectRatioBatchSampler``), built on ``sampler``; None batches ``sampler``'s
            indices in order (``torch.utils.data.BatchSampler``, ``drop_last=False``, what
            the DataLoader would do).
        seed (int, optional): Base of the draws' seeds. Defaults to 0.
        endless (bool): When an epoch of the inner sampler ends, call ``set_epoch`` with the
            next epoch and go on, within the same ``iter()``: the iterator never ends, so an
            iteration-based loop never restarts the DataLoader (mmengine's restart waits 2 s
            and refills the workers' queues every epoch: with 20 labeled images and 4 per
            batch that was 0.4 s of every iteration). The batches are the ones mmengine's
            restarts give (``set_epoch(e + 1)`` after epoch ``e``). Defaults to False.
    """

    def __init__(self, sampler: Sampler, batch_size: int = 1, batch_sampler=None,
                 seed: Optional[int] = None, endless: bool = False) -> None:
        if isinstance(batch_sampler, dict):
            batch_sampler = DATA_SAMPLERS.build(
                batch_sampler, default_args=dict(sampler=sampler, batch_size=batch_size))
        self.inner = batch_sampler or BatchSampler(sampler, batch_size, drop_last=False)
        self.sampler = sampler  # mmengine's loop calls set_epoch on batch_sampler.sampler
        self.batch_size = getattr(self.inner, 'batch_size', batch_size)
        self.seed = 0 if seed is None else int(seed)
        self.rank = get_dist_info()[0]
        self.batches = 0  # batches handed out since iteration 0 (the next draw's b)
        self.endless = endless
        self._epoch: Optional[int] = None  # the inner sampler's epoch, once known
        self._pending: Optional[Iterator[List[int]]] = None

    def __iter__(self) -> Iterator[List[DrawIndex]]:
        fresh = self._pending is None  # a resumed epoch's rest may be empty, a fresh one not
        inner, self._pending = (self._pending or iter(self.inner)), None
        if self._epoch is None:
            self._epoch = int(getattr(self.sampler, 'epoch', 0) or 0)
        while True:
            empty = True
            for batch in inner:
                empty = False
                b = self.batches
                self.batches += 1
                yield [DrawIndex(i, draw_seed(self.seed, self.rank, b, j))
                       for j, i in enumerate(batch)]
            if not self.endless:
                return
            if empty and fresh:
                raise RuntimeError(
                    f'{type(self.sampler).__name__} gave no batch in epoch {self._epoch}: '
                    'an endless stream over it would never yield. Check the dataset is not '
                    'empty.')
            self._epoch += 1
            if hasattr(self.sampler, 'set_epoch'):
                self.sampler.set_epoch(self._epoch)
            inner, fresh = iter(self.inner), True

    def __len__(self) -> int:
        return len(self.inner)

    def fast_forward(self, num_batches: int) -> int:
        """Skip ``num_batches`` batches by index only; return the epoch reached.

        The next ``iter()`` continues with batch ``num_batches`` exactly as an uninterrupted
        run would: within an epoch the rest of its batches, at an epoch boundary (an inner
        iterator running out) ``set_epoch`` on the sampler, as mmengine's loop calls it.
        """
        epoch, left = 0, num_batches
        iterator = iter(self.inner)
        while left > 0:
            try:
                next(iterator)
                left -= 1
            except StopIteration:
                epoch += 1
                if hasattr(self.sampler, 'set_epoch'):
                    self.sampler.set_epoch(epoch)
                iterator = iter(self.inner)
        self._pending = iterator
        self.batches = num_batches
        self._epoch = epoch
        return epoch


@DATASETS.register_module()
class SeededDataset:
    """Seeds ``random``, ``numpy`` and ``torch`` from a :class:`DrawIndex`'s seed, then
    returns ``dataset[index]``; plain indices pass through unchanged.

    In the main process (``num_workers=0``) the global random states are restored after
    the sample, so the model's own randomness does not depend on the data's.
    Attributes other than ``__getitem__``/``__len__`` (``metainfo``, ``datasets``,
    ``cumulative_sizes``, ``get_data_info``, ...) are the wrapped dataset's.

    Args:
        dataset (dict | Dataset): The dataset (a config is built from ``DATASETS``).
    """

    def __init__(self, dataset) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index):
        if not isinstance(index, DrawIndex):
            return self.dataset[index]
        in_worker = get_worker_info() is not None
        saved = None if in_worker else (random.getstate(), np.random.get_state(),
                                        torch.get_rng_state())
        random.seed(index.seed)
        np.random.seed(index.seed % (1 << 32))
        torch.manual_seed(index.seed)
        try:
            return self.dataset[int(index)]
        finally:
            if saved is not None:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])
