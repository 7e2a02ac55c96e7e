"""Fill every batch from several datasets (labeled, unlabeled, ...) in a fixed ratio, per rank."""
import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import Sampler

from ssl_det.registry import DATA_SAMPLERS

PORTRAIT, LANDSCAPE = 0, 1  # aspect-ratio groups: width < height, width >= height
_SOURCE_STREAM, _GROUP_STREAM = 0, 1  # tags that keep the seeds of the two modes apart


def split_batch(batch_size: int, source_ratio: Sequence[Union[int, float]]) -> List[int]:
    """Samples per source in one batch; raises unless the ratio divides the batch exactly.

    Args:
        batch_size (int): Samples per batch.
        source_ratio (Sequence[int | float]): Relative share of each source.

    Returns:
        list[int]: Samples of each source per batch, summing to ``batch_size``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive int, got {batch_size!r}.')
    if len(source_ratio) == 0 or any(r < 0 for r in source_ratio) or sum(source_ratio) <= 0:
        raise ValueError('source_ratio must be non-negative numbers with a positive sum, got '
                         f'{list(source_ratio)}.')
    shares = [batch_size * r / sum(source_ratio) for r in source_ratio]
    counts = [int(round(s)) for s in shares]
    if any(abs(s - c) > 1e-6 for s, c in zip(shares, counts)):
        raise ValueError(
            f'batch_size={batch_size} cannot be split exactly in the ratio '
            f'{list(source_ratio)} (that gives {shares} samples per source). Choose a '
            f'batch_size that is a multiple of sum(source_ratio) for integer ratios, e.g. '
            f'{math.ceil(batch_size / sum(source_ratio)) * sum(source_ratio)}.')
    return counts


@DATA_SAMPLERS.register_module()
class MultiSourceSampler(Sampler):
    """Batches with a fixed number of samples from each source of a ``ConcatDataset``.

    Each chunk of ``batch_size`` consecutive indices is one batch: first the samples of
    source 0, then source 1, and so on, in ``source_ratio`` proportion (batch 5, ratio [1, 4]
    → 1 labeled then 4 unlabeled). Set the DataLoader's ``batch_size`` to the same value.

    An epoch is one pass over source 0 (the labeled set) on each rank: every rank gets
    ``ceil(len(source 0) / world_size)`` of its samples (padded by repetition as mmengine's
    ``DefaultSampler`` pads) and the epoch has ``num_batches = ceil(that / n0)`` batches,
    where ``n0`` is source 0's share of a batch; the last batch is topped up from the next
    pass. ``len(sampler) == num_batches * batch_size`` is exactly the number of indices one
    ``iter(sampler)`` yields, so ``EpochBasedTrainLoop`` runs ``num_batches`` iterations per
    epoch (and ``IterBasedTrainLoop`` re-iterates with ``set_epoch`` when one ends). The other
    sources are endless streams of reshuffled passes, split across ranks; epoch ``e``
    continues where epoch ``e - 1`` stopped, so a large unlabeled set is covered evenly.
    Shuffles depend only on ``(seed, source, pass)``, so they are the same on every rank
    (each rank takes every ``world_size``-th index: ranks see distinct data) and after
    resuming.

    With ``group_by_aspect_ratio`` every batch holds only landscape (``width >= height``) or
    only portrait images, which lets the data preprocessor pad less. Source 0's pass is split
    by group; each group fills ``floor(m_g / n0)`` batches and the leftovers fill the
    remaining ``num_batches - sum`` batches (topped up by repeating that group's samples; when
    both groups have leftovers but only one batch is left, the smaller leftover, fewer than
    ``n0`` samples per rank, waits for a later epoch). The other sources draw the batch's group
    from per-epoch reshuffled streams; when a source has no image of that group it takes the
    other group instead (counted in ``num_group_fallbacks``, warned about once) rather than
    waiting forever as mmdet's ``GroupMultiSourceSampler`` does.

    Args:
        dataset (ConcatDataset): Has ``datasets`` (the sources, in order); sub-datasets with
            ``get_data_info(i)`` returning ``width``/``height`` when grouping.
        batch_size (int): Samples per batch (all sources together).
        source_ratio (Sequence[int | float]): Share of each source; ``batch_size`` must split
            exactly and source 0's share must be positive. Defaults to (1, 1).
        shuffle (bool): Shuffle each pass. Defaults to True.
        seed (int, optional): Shuffle seed; None draws one and syncs it across ranks.
            Defaults to None.
        group_by_aspect_ratio (bool): Keep each batch within one aspect-ratio group.
            Defaults to False.
        rank (int, optional): This process's rank. Defaults to None (from mmengine.dist).
        world_size (int, optional): Number of ranks. Defaults to None (from mmengine.dist).

    Example:
        >>> train_dataloader = dict(
        ...     batch_size=5,
        ...     sampler=dict(type='ssl_det.MultiSourceSampler', batch_size=5,
        ...                  source_ratio=[1, 4]),
        ...     dataset=dict(type='ConcatDataset', datasets=[labeled, unlabeled]))
    """

    def __init__(self,
                 dataset,
                 batch_size: int,
                 source_ratio: Sequence[Union[int, float]] = (1, 1),
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 group_by_aspect_ratio: bool = False,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        sources = getattr(dataset, 'datasets', None)
        if sources is None:
            raise TypeError('MultiSourceSampler needs a ConcatDataset (an object with '
                            f'`.datasets`), got {type(dataset).__name__}.')
        if len(source_ratio) != len(sources):
            raise ValueError(f'source_ratio has {len(source_ratio)} entries but the dataset '
                             f'has {len(sources)} sources; give one share per source.')
        self.dataset = dataset
        self.batch_size = batch_size
        self.source_ratio = list(source_ratio)
        self.num_per_source = split_batch(batch_size, self.source_ratio)
        self.source_sizes = [len(source) for source in sources]
        self._check_sources()
        self.offsets = np.cumsum([0] + self.source_sizes[:-1]).tolist()

        dist_rank, dist_world_size = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'Need 0 <= rank < world_size, got rank={self.rank}, '
                             f'world_size={self.world_size}.')
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0

        self.samples_per_rank = [math.ceil(n / self.world_size) for n in self.source_sizes]
        self.num_batches = math.ceil(self.samples_per_rank[0] / self.num_per_source[0])

        self.group_by_aspect_ratio = group_by_aspect_ratio
        self.num_group_fallbacks = [0] * len(sources)
        self.groups: List[np.ndarray] = []
        if group_by_aspect_ratio:
            self.groups = [self._aspect_groups(s, source) for s, source in enumerate(sources)]
            self._warn_empty_groups()

    def _check_sources(self) -> None:
        if self.num_per_source[0] == 0:
            raise ValueError('source 0 (the labeled set) defines the epoch, so its share of '
                             f'source_ratio must be positive, got {self.source_ratio}.')
        for s, (size, num) in enumerate(zip(self.source_sizes, self.num_per_source)):
            if size == 0 and num > 0:
                raise ValueError(f'source {s} of the dataset is empty but source_ratio gives it '
                                 f'{num} samples per batch; check its ann_file and filter_cfg.')

    @staticmethod
    def _aspect_groups(source_idx: int, source) -> np.ndarray:
        """Group of every sample of one source: LANDSCAPE if width >= height else PORTRAIT."""
        groups = np.empty(len(source), dtype=np.int64)
        for i in range(len(source)):
            info = source.get_data_info(i)
            try:
                width, height = info['width'], info['height']
            except KeyError as exc:
                raise KeyError(
                    f'group_by_aspect_ratio needs `width` and `height` in get_data_info({i}) of '
                    f'source {source_idx} ({type(source).__name__}), which lacks {exc}. Add them '
                    'to the annotations or set group_by_aspect_ratio=False.') from None
            groups[i] = LANDSCAPE if width >= height else PORTRAIT
        return groups

    def _warn_empty_groups(self) -> None:
        needed = set(self.groups[0].tolist())
        for s, groups in enumerate(self.groups[1:], start=1):
            if self.num_per_source[s] == 0:
                continue
            for group in sorted(needed - set(groups.tolist())):
                name = 'landscape' if group == LANDSCAPE else 'portrait'
                print_log(
                    f'MultiSourceSampler: source {s} has no {name} images but source 0 does; '
                    f'{name} batches take source {s}\'s other images '
                    '(counted in num_group_fallbacks).', logger='current', level=30)

    def _rank_pass(self, indices: np.ndarray, key: Tuple[int, ...]) -> np.ndarray:
        """This rank's share of one (shuffled) pass over ``indices``; the pass is the same on
        every rank because it depends only on ``(seed, key)``."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed % 2**32, *key])
            indices = indices[rng.permutation(len(indices))]
        per_rank = math.ceil(len(indices) / self.world_size)
        # Pad by repetition so every rank gets the same number of samples.
        padded = np.resize(indices, per_rank * self.world_size)
        return padded[self.rank::self.world_size]

    def _take(self, indices: np.ndarray, key: Tuple[int, ...], start: int,
              count: int) -> np.ndarray:
        """``count`` items of this rank's endless stream over ``indices`` from position
        ``start``; pass ``p`` of the stream is shuffled with ``(*key, p)``."""
        if count == 0:
            return np.empty(0, dtype=np.int64)
        per_rank = math.ceil(len(indices) / self.world_size)
        pass_idx, offset = divmod(start, per_rank)
        chunks = []
        while count > 0:
            chunk = self._rank_pass(indices, key + (pass_idx, ))[offset:offset + count]
            chunks.append(chunk)
            count -= len(chunk)
            pass_idx, offset = pass_idx + 1, 0
        return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        if self.group_by_aspect_ratio:
            batches = self._grouped_batches()
        else:
            batches = self._plain_batches()
        for batch in batches:
            yield from batch.tolist()

    def _plain_batches(self) -> List[np.ndarray]:
        per_source = []
        for s, num in enumerate(self.num_per_source):
            count = self.num_batches * num
            # Source 0 starts a fresh pass each epoch; the others continue their stream.
            start = self.epoch * (self.samples_per_rank[0] if s == 0 else count)
            local = self._take(np.arange(self.source_sizes[s]), (_SOURCE_STREAM, s), start,
                               count)
            per_source.append(local + self.offsets[s])
        return [
            np.concatenate([
                per_source[s][b * num:(b + 1) * num] for s, num in enumerate(self.num_per_source)
            ]) for b in range(self.num_batches)
        ]

    def _grouped_batches(self) -> List[np.ndarray]:
        n0 = self.num_per_source[0]
        labeled = self._rank_pass(np.arange(self.source_sizes[0]),
                                  (_SOURCE_STREAM, 0, self.epoch))
        positions = [np.flatnonzero(self.groups[0][labeled] == g) for g in (PORTRAIT, LANDSCAPE)]
        num_group_batches = self._allocate([len(p) for p in positions], n0)
        batches = []  # (position of the first labeled sample in the pass, group, labeled part)
        for group, (pos, num_b) in enumerate(zip(positions, num_group_batches)):
            pos = np.resize(pos, num_b * n0)  # tops up the last batch by repetition
            for b in range(num_b):
                chunk = pos[b * n0:(b + 1) * n0]
                batches.append((int(chunk[0]), group, labeled[chunk]))
        # Interleave the groups in the order their samples appear in the (shuffled) pass.
        batches.sort(key=lambda item: item[0])
        others = self._group_streams(num_group_batches)
        used = [[0] * len(self.num_per_source) for _ in (PORTRAIT, LANDSCAPE)]
        out = []
        for _, group, labeled_part in batches:
            parts = [labeled_part + self.offsets[0]]
            for s, num in enumerate(self.num_per_source[1:], start=1):
                begin = used[group][s]
                parts.append(others[group][s][begin:begin + num] + self.offsets[s])
                used[group][s] += num
            out.append(np.concatenate(parts))
        return out

    def _allocate(self, group_sizes: List[int], n0: int) -> List[int]:
        """Batches per group so that they add up to ``num_batches``: full batches first, the
        spare ones to the groups with the largest leftovers."""
        full = [m // n0 for m in group_sizes]
        leftovers = [m % n0 for m in group_sizes]
        spare = self.num_batches - sum(full)
        for group in sorted(range(len(full)), key=lambda g: -leftovers[g])[:spare]:
            if leftovers[group]:
                full[group] += 1
        return full

    def _group_streams(self, num_group_batches: List[int]) -> List[List[np.ndarray]]:
        """For each group and source s > 0, the local indices its batches take this epoch."""
        streams = []
        for group, num_b in enumerate(num_group_batches):
            per_source = [np.empty(0, dtype=np.int64)]
            for s, num in enumerate(self.num_per_source[1:], start=1):
                members = np.flatnonzero(self.groups[s] == group)
                if len(members) == 0 or num == 0:
                    if num_b and num:
                        self.num_group_fallbacks[s] += num_b
                    members = np.arange(self.source_sizes[s])
                key = (_GROUP_STREAM, s, group, self.epoch)
                per_source.append(self._take(members, key, 0, num_b * num))
            streams.append(per_source)
        return streams

    def __len__(self) -> int:
        """Indices per epoch: ``num_batches * batch_size`` (exactly what ``__iter__`` yields)."""
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch; it selects the shuffles (and where the endless streams resume).

        Args:
            epoch (int): Epoch number (mmengine's ``DistSamplerSeedHook`` calls this).
        """
        self.epoch = epoch
