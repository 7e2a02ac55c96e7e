"""Resumable sampling: draws numbered and seeded, fast-forward by index only."""
import pickle

import numpy as np
import pytest
from mmengine.dataset import DefaultSampler, InfiniteSampler
from torch.utils.data import SequentialSampler

from ssl_det.datasets.multi_source_sampler import MultiSourceSampler
from ssl_det.datasets.resumable import DrawIndex, ResumableBatchSampler, SeededDataset


class Counting:
    """A dataset that counts reads and returns a random number drawn in the read."""

    def __init__(self, n):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        return int(i), float(np.random.rand())


def stream(batch_sampler, num_batches):
    """Batches as mmengine's iteration loop draws them: set_epoch at each restart."""
    return stream_from(batch_sampler, num_batches, 0)


@pytest.mark.parametrize('make', [
    lambda d: DefaultSampler(d, shuffle=True, seed=3),
    lambda d: InfiniteSampler(d, shuffle=True, seed=3)])
@pytest.mark.parametrize('skip', [0, 2, 3, 7])
def test_fast_forward_continues_the_same_batches_and_seeds(make, skip):
    dataset = Counting(10)
    full = stream(ResumableBatchSampler(make(dataset), batch_size=4, seed=1), 9)
    resumed = ResumableBatchSampler(make(dataset), batch_size=4, seed=1)
    epoch = resumed.fast_forward(skip)
    rest = stream_from(resumed, 9 - skip, epoch)
    assert [[int(i) for i in b] for b in rest] == [[int(i) for i in b] for b in full[skip:]]
    assert [[i.seed for i in b] for b in rest] == [[i.seed for i in b] for b in full[skip:]]
    assert dataset.reads == 0  # nothing was loaded to skip
    seeds = [i.seed for b in full for i in b]
    assert len(set(seeds)) == len(seeds)  # every draw its own seed, across epochs too


def stream_from(batch_sampler, num_batches, epoch):
    out, iterator = [], iter(batch_sampler)
    while len(out) < num_batches:
        try:
            out.append(next(iterator))
        except StopIteration:
            epoch += 1
            batch_sampler.sampler.set_epoch(epoch)
            iterator = iter(batch_sampler)
    return out


def test_seeded_dataset_depends_on_the_draw_only():
    dataset = SeededDataset(Counting(5))
    a = dataset[DrawIndex(2, seed=11)]
    np.random.rand()  # whatever happened before in this process
    b = dataset[DrawIndex(2, seed=11)]
    c = dataset[DrawIndex(2, seed=12)]
    assert a == b and a != c
    state = np.random.get_state()[1].copy()
    dataset[DrawIndex(3, seed=5)]
    assert np.array_equal(np.random.get_state()[1], state)  # main process: states restored
    assert dataset[4][0] == 4 and len(dataset) == 5 and dataset.n == 5  # plain index, attrs
    again = pickle.loads(pickle.dumps(DrawIndex(7, seed=9)))
    assert again == 7 and again.seed == 9


def multi_source(seed=3):
    class Concat:  # what the sampler needs of a ConcatDataset: .datasets
        datasets = [Counting(6), Counting(10)]

        def __len__(self):
            return 16

    return MultiSourceSampler(Concat(), batch_size=4, source_ratio=[1, 1], seed=seed)


@pytest.mark.parametrize('make', [
    lambda d: DefaultSampler(d, shuffle=True, seed=3),
    lambda d: multi_source()])
@pytest.mark.parametrize('skip', [0, 3, 4, 7])
def test_endless_gives_the_restarted_stream_in_one_iterator(make, skip):
    """endless=True: the batches (and seeds) of mmengine's set_epoch restarts, from a single
    iter() that never ends, also after a fast-forward that stops on an epoch boundary."""
    dataset = Counting(10)
    full = stream(ResumableBatchSampler(make(dataset), batch_size=4, seed=1), 12)
    endless = ResumableBatchSampler(make(dataset), batch_size=4, seed=1, endless=True)
    endless.fast_forward(skip)
    iterator = iter(endless)
    rest = [next(iterator) for _ in range(12 - skip)]  # StopIteration here would fail
    assert [[int(i) for i in b] for b in rest] == [[int(i) for i in b] for b in full[skip:]]
    assert [[i.seed for i in b] for b in rest] == [[i.seed for i in b] for b in full[skip:]]
    assert len({tuple(int(i) for i in b) for b in full}) > len(endless)  # epochs differ


def test_endless_over_an_empty_sampler_raises():
    with pytest.raises(RuntimeError, match='gave no batch'):
        next(iter(ResumableBatchSampler(SequentialSampler(range(0)), batch_size=2,
                                        endless=True)))
