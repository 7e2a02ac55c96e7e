"""MultiSourceSampler: exact per-batch ratios, finite epochs, ranks, seeds, aspect groups."""
import math
import threading

import pytest
from mmengine.dataset import BaseDataset, ConcatDataset
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from ssl_det.datasets import MultiSourceSampler


class FakeImages(BaseDataset):
    """``num`` images; ``portrait`` of them (the first ones) taller than wide."""

    def __init__(self, num, portrait=0, tag='l'):
        self._num, self._portrait, self._tag = num, portrait, tag
        super().__init__(lazy_init=True, serialize_data=False)

    def load_data_list(self):
        return [
            dict(img_id=f'{self._tag}{i}', width=40 if i < self._portrait else 60, height=50)
            for i in range(self._num)
        ]

    def __getitem__(self, idx):
        return self.get_data_info(idx)['img_id']


def _concat(*sources):
    return ConcatDataset(list(sources))


def _batches(sampler):
    indices = list(sampler)
    return [indices[i:i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


def _source_of(dataset, idx):
    return sum(idx >= c for c in dataset.cumulative_sizes)


def test_ratio_in_every_batch_and_len():
    dataset = _concat(FakeImages(10), FakeImages(33, tag='u'))
    sampler = MultiSourceSampler(dataset, batch_size=4, source_ratio=[1, 3], seed=0)
    batches = _batches(sampler)
    # One pass over the 10 labeled images, one per batch.
    assert sampler.num_batches == 10 and len(sampler) == 40
    assert len(batches) == 10 and sum(map(len, batches)) == len(sampler)
    for batch in batches:
        assert [_source_of(dataset, i) for i in batch] == [0, 1, 1, 1]
    assert sorted(b[0] for b in batches) == list(range(10))  # every labeled image once
    unlabeled = [i for b in batches for i in b[1:]]
    assert len(set(unlabeled)) == 30  # 30 of the 33 unlabeled, no repeats within a pass


def test_dataloader_iterations_match_len():
    dataset = _concat(FakeImages(7), FakeImages(20, tag='u'))
    sampler = MultiSourceSampler(dataset, batch_size=3, source_ratio=[2, 1], seed=0)
    # Source 0 gives 2 per batch: ceil(7 / 2) = 4 batches, the last topped up.
    assert len(sampler) == 12
    loader = DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=list)
    batches = list(loader)
    assert len(loader) == len(batches) == 4  # what EpochBasedTrainLoop runs per epoch
    for batch in batches:
        assert [name[0] for name in batch] == ['l', 'l', 'u']
    assert {name for b in batches for name in b[:2]} == {f'l{i}' for i in range(7)}


@pytest.mark.parametrize('scope, name', [('ssl_det', 'MultiSourceSampler'),
                                         ('mmdet', 'ssl_det.MultiSourceSampler')])
def test_builds_from_an_mmengine_dataloader_config(scope, name):
    dataset = _concat(FakeImages(8), FakeImages(12, tag='u'))
    # The runner sets the config's default_scope: ssl_det's configs, or a plain mmdet config
    # that names ours with the scope prefix.
    with DefaultScope.overwrite_default_scope(scope):
        loader = Runner.build_dataloader(
            dict(batch_size=4, num_workers=0,
                 sampler=dict(type=name, batch_size=4, source_ratio=[1, 1]),
                 dataset=dataset, collate_fn=dict(type='pseudo_collate')), seed=3)
    assert isinstance(loader.sampler, MultiSourceSampler) and loader.sampler.seed == 3
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    assert all([n[0] for n in b] == ['l', 'l', 'u', 'u'] for b in batches)


@pytest.mark.parametrize('group', [False, True])
def test_ranks_get_distinct_data_and_same_length(group):
    dataset = _concat(FakeImages(11, portrait=4), FakeImages(40, portrait=15, tag='u'))
    world = 3
    samplers = [
        MultiSourceSampler(dataset, batch_size=3, source_ratio=[1, 2], seed=5, rank=r,
                           world_size=world, group_by_aspect_ratio=group) for r in range(world)
    ]
    # ceil(11 / 3) = 4 labeled images per rank, one per batch.
    assert {len(s) for s in samplers} == {12}
    per_rank = [_batches(s) for s in samplers]
    labeled = [{b[0] for b in batches} for batches in per_rank]
    assert all(len(lab) == 4 for lab in labeled)
    # Padding repeats one image (12 slots for 11 images); otherwise ranks are disjoint.
    assert len(set.union(*labeled)) == 11
    assert sum(len(a & b) for i, a in enumerate(labeled) for b in labeled[i + 1:]) <= 1
    if not group:  # the unlabeled stream is split across ranks too
        unlabeled = [{i for b in batches for i in b[1:]} for batches in per_rank]
        assert all(not (a & b) for i, a in enumerate(unlabeled) for b in unlabeled[i + 1:])


def test_seed_determinism_and_set_epoch():
    dataset = _concat(FakeImages(12), FakeImages(30, tag='u'))

    def make(seed):
        return MultiSourceSampler(dataset, batch_size=4, source_ratio=[1, 1], seed=seed)

    assert list(make(1)) == list(make(1))
    assert list(make(1)) != list(make(2))
    sampler = make(1)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0  # re-iterating the same epoch repeats it
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and len(epoch1) == len(epoch0)
    # Epoch 1 continues the unlabeled stream: together the two epochs cover 24 of 30 once each.
    unlabeled = [i for ep in (epoch0, epoch1) for b in range(0, 24, 4) for i in ep[b + 2:b + 4]]
    assert len(unlabeled) == len(set(unlabeled)) == 24
    unshuffled = MultiSourceSampler(dataset, batch_size=4, source_ratio=[1, 1], shuffle=False,
                                    seed=0)
    assert list(unshuffled)[:8] == [0, 1, 12, 13, 2, 3, 14, 15]


def _group(dataset, idx):
    info = dataset.get_data_info(idx)
    return info['width'] >= info['height']


def test_aspect_ratio_groups_keep_batches_pure():
    dataset = _concat(FakeImages(13, portrait=5), FakeImages(20, portrait=8, tag='u'))
    sampler = MultiSourceSampler(dataset, batch_size=4, source_ratio=[1, 1], seed=0,
                                 group_by_aspect_ratio=True)
    batches = _batches(sampler)
    assert len(batches) == sampler.num_batches == math.ceil(13 / 2) and len(sampler) == 28
    for batch in batches:
        assert [_source_of(dataset, i) for i in batch] == [0, 0, 1, 1]
        assert len({_group(dataset, i) for i in batch}) == 1
    assert sampler.num_group_fallbacks == [0, 0]
    # 5 portrait + 8 landscape labeled: 2 + 4 full batches; the spare 7th batch goes to the
    # portrait leftover (topped up by repeating a portrait image).
    assert sum(not _group(dataset, b[0]) for b in batches) == 3


def test_empty_group_in_a_source_does_not_hang():
    # The unlabeled source has no portrait images at all; mmdet's sampler spins forever here.
    dataset = _concat(FakeImages(8, portrait=4), FakeImages(10, portrait=0, tag='u'))
    result = {}

    def run():
        sampler = MultiSourceSampler(dataset, batch_size=2, source_ratio=[1, 1], seed=0,
                                     group_by_aspect_ratio=True)
        result['batches'] = _batches(sampler)
        result['sampler'] = sampler

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), 'sampler did not finish'
    batches, sampler = result['batches'], result['sampler']
    assert len(batches) == 8
    portrait_batches = [b for b in batches if not _group(dataset, b[0])]
    assert len(portrait_batches) == 4
    # Those batches took landscape unlabeled images instead, and were counted.
    assert all(_group(dataset, b[1]) for b in portrait_batches)
    assert sampler.num_group_fallbacks == [0, 4]


def _grouped_unlabeled(dataset, batches):
    """Per aspect-ratio group, the unlabeled indices in the order the group's batches take
    them (a batch's group is that of its labeled sample)."""
    out = {False: [], True: []}
    for batch in batches:
        group = _group(dataset, batch[0])
        unlabeled = [i for i in batch if _source_of(dataset, i) == 1]
        assert all(_group(dataset, i) == group for i in unlabeled)  # no fallbacks here
        out[group].extend(unlabeled)
    return out


@pytest.mark.parametrize('epoch', [0, 1, 3])
def test_grouped_sampler_draws_unlabeled_without_repeats(epoch):
    """With aspect-ratio groups, the unlabeled images of a group are drawn in passes: each
    epoch (one pass over the labeled set) a rank walks through its share of each group's
    unlabeled images, reshuffled per epoch, and starts another pass only when that share is
    used up. Within a pass nothing repeats on a rank, and the two ranks' shares are
    disjoint (up to the padding that evens them out)."""
    world = 2
    # 13 labeled (5 portrait): 7 batches per rank of 1 labeled + 3 unlabeled; 21 unlabeled
    # per rank for 11 portrait + 19 landscape unlabeled images, so the groups' passes
    # (6 and 10 images per rank) run out within the epoch.
    dataset = _concat(FakeImages(13, portrait=5), FakeImages(30, portrait=11, tag='u'))
    members = {False: 11, True: 19}
    draws = []
    for rank in range(world):
        sampler = MultiSourceSampler(dataset, batch_size=4, source_ratio=[1, 3], seed=7,
                                     rank=rank, world_size=world, group_by_aspect_ratio=True)
        sampler.set_epoch(epoch)
        draws.append(_grouped_unlabeled(dataset, _batches(sampler)))
        assert sampler.num_group_fallbacks == [0, 0]
    wrapped = False
    for group, num in members.items():
        pass_len = math.ceil(num / world)
        passes = [[d[group][k:k + pass_len] for k in range(0, len(d[group]), pass_len)]
                  for d in draws]
        wrapped |= any(len(p) > 1 for p in passes)
        for rank_passes in passes:
            for chunk in rank_passes:
                assert len(chunk) == len(set(chunk)), (group, chunk)
        for k in range(min(len(p) for p in passes)):
            shared = set(passes[0][k]) & set(passes[1][k])
            assert len(shared) <= pass_len * world - num, (group, k, shared)
    assert wrapped  # the sizes above make some pass run out, so passes are really checked


def test_grouped_sampler_large_unlabeled_set_no_repeats_in_an_epoch():
    """When each group has unlabeled images to spare, a whole epoch of the grouped sampler
    draws every unlabeled index at most once, on each rank and across the two ranks."""
    world = 2
    dataset = _concat(FakeImages(13, portrait=5), FakeImages(120, portrait=40, tag='u'))
    for epoch in (0, 1):
        seen = []
        for rank in range(world):
            sampler = MultiSourceSampler(dataset, batch_size=4, source_ratio=[1, 3], seed=3,
                                         rank=rank, world_size=world,
                                         group_by_aspect_ratio=True)
            sampler.set_epoch(epoch)
            unlabeled = [i for b in _batches(sampler) for i in b[1:]]
            assert len(unlabeled) == 21 and len(set(unlabeled)) == 21
            seen.extend(unlabeled)
        assert len(seen) == len(set(seen)) == 42


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(batch_size=4, source_ratio=[1, 2]), ValueError, 'cannot be split exactly'),
    (dict(batch_size=4, source_ratio=[1, 1, 1, 1]), ValueError, 'has 2 sources'),
    (dict(batch_size=4, source_ratio=[0, 1]), ValueError, 'source 0'),
    (dict(batch_size=0, source_ratio=[1, 1]), ValueError, 'positive int'),
])
def test_bad_configs(kwargs, error, match):
    dataset = _concat(FakeImages(4), FakeImages(4, tag='u'))
    with pytest.raises(error, match=match):
        MultiSourceSampler(dataset, seed=0, **kwargs)


def test_empty_source_and_missing_sizes():
    with pytest.raises(ValueError, match='source 1 of the dataset is empty'):
        MultiSourceSampler(_concat(FakeImages(4), FakeImages(0, tag='u')), batch_size=2, seed=0)

    class NoSize(FakeImages):

        def load_data_list(self):
            return [dict(img_id=f'x{i}') for i in range(self._num)]

    with pytest.raises(KeyError, match='width'):
        MultiSourceSampler(_concat(NoSize(2), NoSize(2)), batch_size=2, seed=0,
                           group_by_aspect_ratio=True)
    with pytest.raises(TypeError, match='ConcatDataset'):
        MultiSourceSampler(FakeImages(3), batch_size=2, seed=0)


@pytest.mark.parametrize('group', [False, True])
def test_every_epoch_and_every_pass_of_a_stream_is_shuffled_anew(group):
    """Epochs reshuffle the labeled pass, and each pass of the unlabeled stream (here 4
    unlabeled images, 6 drawn per epoch: passes cross epochs) has its own order: reusing the
    first pass's order for later ones fails here (it kept the unlabeled batches of later
    epochs different, which a weaker check accepts)."""
    dataset = _concat(FakeImages(6, portrait=0), FakeImages(4, portrait=0, tag='u'))
    sampler = MultiSourceSampler(dataset, batch_size=4, source_ratio=[2, 2], seed=3,
                                 group_by_aspect_ratio=group)
    labeled_orders, streams = [], []
    for epoch in range(8):
        sampler.set_epoch(epoch)
        batches = _batches(sampler)
        labeled_orders.append(tuple(i for b in batches for i in b[:2]))
        streams.append([i for b in batches for i in b[2:]])
    assert all(sorted(order) == list(range(6)) for order in labeled_orders)
    assert len(set(labeled_orders)) >= 6  # 720 orders: 8 epochs hardly repeat one
    if group:  # each epoch's group stream starts a pass of its own
        passes = [tuple(s[p:p + 4]) for s in streams for p in (0, 4)]
        passes = [p for p in passes if len(p) == 4]
    else:  # one endless stream: epoch e continues where e - 1 stopped
        stream = sum(streams, [])
        passes = [tuple(stream[p:p + 4]) for p in range(0, len(stream), 4)]
    assert len(passes) >= 8 and all(sorted(p) == [6, 7, 8, 9] for p in passes)
    assert len(set(passes)) >= 5  # 24 orders of 4 images: the passes show many of them


def test_mixpl_config_draws_rare_class_labeled_images_more_often(tmp_path):
    """The MixPL COCO config resamples the labeled split by class frequency (repeat-factor
    sampling): with the sampler, an image of a class seen in 1 labeled image of 10 is
    drawn twice per pass over the labeled source (threshold 0.4: sqrt(0.4 / 0.1) = 2), every
    other image once."""
    import json
    import os.path as osp
    from collections import Counter

    from mmengine.config import Config

    from demo_helpers import ROOT
    from ssl_det.registry import DATASETS
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/soft_teacher/'
        'soft-teacher-mixpl_faster-rcnn_r50-caffe_fpn_180k_semi-10pct-coco.py'))
    labeled_cfg = cfg.train_dataloader.dataset.datasets[0]
    assert labeled_cfg.type == 'ClassBalancedDataset'
    images = [dict(id=i, file_name=f'{i}.jpg', width=64, height=48) for i in range(10)]
    anns = [dict(id=i, image_id=i, category_id=1, bbox=[4, 4, 10, 10], area=100, iscrowd=0)
            for i in range(10)]
    anns.append(dict(id=10, image_id=7, category_id=2, bbox=[20, 20, 8, 8], area=64,
                     iscrowd=0))
    categories = [dict(id=1, name='common'), dict(id=2, name='rare')]
    for name, data in (('labeled', dict(images=images, annotations=anns)),
                       ('unlabeled', dict(images=images, annotations=[]))):
        (tmp_path / f'{name}.json').write_text(json.dumps(dict(data, categories=categories)))
    labeled_cfg.oversample_thr = 0.4
    labeled_cfg.dataset.update(data_root=str(tmp_path), ann_file='labeled.json',
                               metainfo=dict(classes=('common', 'rare')), pipeline=[])
    unlabeled_cfg = dict(cfg.train_dataloader.dataset.datasets[1], data_root=str(tmp_path),
                         ann_file='unlabeled.json', metainfo=dict(classes=('common', 'rare')),
                         pipeline=[])
    with DefaultScope.overwrite_default_scope('ssl_det'):
        dataset = DATASETS.build(dict(type='ConcatDataset',
                                      datasets=[labeled_cfg, unlabeled_cfg]))
    labeled = dataset.datasets[0]
    assert len(labeled) == 11
    sampler = MultiSourceSampler(dataset, batch_size=2, source_ratio=[1, 1], seed=0)
    draws, epoch = Counter(), 0
    while sum(draws.values()) < 1100:
        sampler.set_epoch(epoch)
        epoch += 1
        for index in sampler:
            if index < len(labeled):
                draws[labeled.get_data_info(index)['img_id']] += 1
    common = [draws[i] for i in range(10) if i != 7]
    ratio = draws[7] / (sum(common) / len(common))
    assert 1.8 < ratio < 2.2, (ratio, draws)
    assert min(common) > 0.8 * max(common)
