"""Resumable sampling: draws numbered and seeded, fast-forward by index only."""
import pickle

import numpy as np
import pytest
from mmengine.dataset import DefaultSampler, InfiniteSampler

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
