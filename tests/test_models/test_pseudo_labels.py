"""Pseudo-label policies: exact splits, per-class thresholds, dynamic adaptation and state."""
import multiprocessing
import os.path as osp
import socket
import traceback

import pytest
import torch
import torch.distributed as dist

from ssl_det.models.pseudo_labels import (DualThreshold, DynamicThreshold, FixedThreshold,
                                          MatchedScoreThreshold, two_means,
                                          PseudoLabelSplit, otsu_split)
from ssl_det.registry import TASK_UTILS


def _labels(n, value=0):
    return torch.full((n, ), value, dtype=torch.long)


def test_fixed_threshold_split_and_build():
    policy = TASK_UTILS.build(dict(type='ssl_det.FixedThreshold', score_thr=0.7))
    assert isinstance(policy, FixedThreshold)
    scores = torch.tensor([0.1, 0.69, 0.7, 0.71, 1.0])
    split = policy(scores, _labels(5))
    assert split.confident.tolist() == [False, False, True, True, True]
    assert not split.ignored.any()
    assert split.dropped.tolist() == [True, True, False, False, False]
    assert policy.state_dict() == {}  # the config, not a checkpoint, owns static thresholds


def test_dual_threshold_exact_split_including_boundaries():
    policy = DualThreshold(high=0.9, low=0.5)
    scores = torch.tensor([0.0, 0.49, 0.5, 0.51, 0.89, 0.9, 0.95, 1.0])
    split = policy(scores, _labels(8))
    assert isinstance(split, PseudoLabelSplit)
    assert split.confident.tolist() == [False, False, False, False, False, True, True, True]
    assert split.ignored.tolist() == [False, False, True, True, True, False, False, False]
    assert split.dropped.tolist() == [True, True, False, False, False, False, False, False]
    assert not (split.confident & split.ignored).any()
    # A score equal to the threshold counts as reaching it in half precision too.
    split = policy(torch.tensor([0.9, 0.5], dtype=torch.float16), _labels(2))
    assert split.confident.tolist() == [True, False] and split.ignored.tolist() == [False, True]


def test_dual_threshold_per_class():
    policy = DualThreshold(high=[0.9, 0.6, 0.8], low=[0.5, 0.3, 0.8])
    assert policy.num_classes == 3
    scores = torch.tensor([0.7, 0.7, 0.7, 0.8, 0.4, 0.2])
    labels = torch.tensor([0, 1, 2, 2, 1, 1])
    split = policy(scores, labels)
    assert split.confident.tolist() == [False, True, False, True, False, False]
    assert split.ignored.tolist() == [True, False, False, False, True, False]
    thr = policy.thresholds()
    assert torch.allclose(thr['high'], torch.tensor([0.9, 0.6, 0.8]))
    assert torch.allclose(thr['low'], torch.tensor([0.5, 0.3, 0.8]))
    # A scalar broadcasts against a per-class list.
    mixed = DualThreshold(high=0.9, low=[0.1, 0.2])
    assert mixed.thresholds()['high'].tolist() == pytest.approx([0.9, 0.9])
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\)'):
        policy(torch.tensor([0.5]), torch.tensor([3]))


@pytest.mark.parametrize('kwargs, match', [
    (dict(high=0.5, low=0.9), r'low > high for class indices \[0\]'),
    (dict(high=1.2, low=0.5), r'high must lie in \[0, 1\]'),
    (dict(high=0.9, low=-0.1), r'low must lie in \[0, 1\]'),
    (dict(high=[0.9, 0.4], low=[0.5, 0.5]), r'class indices \[1\]'),
    (dict(high=[0.9, 0.9], low=[0.5, 0.5, 0.5]), 'different numbers of per-class values'),
    (dict(high=[0.9, 0.9], low=0.5, num_classes=3), 'has 2 per-class values'),
])
def test_dual_threshold_rejects_bad_thresholds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DualThreshold(**kwargs)


def test_empty_inputs():
    for policy in (FixedThreshold(0.5), DualThreshold(0.9, 0.5, num_classes=2),
                   DynamicThreshold(num_classes=2)):
        scores, labels = torch.zeros(0), torch.zeros(0, dtype=torch.long)
        policy.update(scores, labels)
        split = policy(scores, labels)
        assert split.confident.shape == (0, ) and split.ignored.dtype == torch.bool
        stats = policy.log_stats(split, labels)
        assert stats['pseudo/num_confident'] == 0.0 and stats['pseudo/num_ignored'] == 0.0


def test_bad_inputs():
    policy = DualThreshold()
    with pytest.raises(ValueError, match='shape'):
        policy(torch.zeros(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match='integer class indices'):
        policy(torch.zeros(3), torch.zeros(3))


def test_log_stats_keys_and_counts():
    policy = DualThreshold(high=[0.9, 0.8], low=[0.5, 0.4])
    scores = torch.tensor([0.95, 0.6, 0.1, 0.85, 0.85, 0.45])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    split = policy(scores, labels)
    stats = policy.log_stats(split, labels, class_names=['person', 'traffic light'])
    assert stats['pseudo/num_confident'] == 3.0
    assert stats['pseudo/num_ignored'] == 2.0 and stats['pseudo/num_dropped'] == 1.0
    assert stats['pseudo/num_confident_person'] == 1.0
    assert stats['pseudo/num_confident_traffic_light'] == 2.0
    assert stats['pseudo/num_ignored_person'] == 1.0
    assert stats['pseudo/num_ignored_traffic_light'] == 1.0
    assert stats['pseudo/thr_high_traffic_light'] == pytest.approx(0.8)
    assert stats['pseudo/thr_low_person'] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in stats.values())
    by_index = policy.log_stats(split, labels)
    assert by_index['pseudo/num_confident_1'] == 2.0
    assert len(policy.log_stats(split, labels, per_class=False)) == 3
    scalar = FixedThreshold(0.9).log_stats(split, labels)
    assert scalar['pseudo/thr_high'] == pytest.approx(0.9)
    with pytest.raises(ValueError, match='class_names has 3 names'):
        policy.log_stats(split, labels, class_names=['a', 'b', 'c'])


def test_otsu_split_two_clusters():
    hist = torch.zeros(2, 10, dtype=torch.float64)
    hist[0, 1] = 30  # scores around 0.15 ...
    hist[0, 8] = 10  # ... and 0.85; empty bins between
    hist[1, 4] = 5  # one bin only: no split
    boundary, upper_mean, valid = otsu_split(hist)
    assert valid.tolist() == [True, False]
    assert boundary[0].item() == pytest.approx(0.5)  # middle of the gap [0.2, 0.8]
    assert upper_mean[0].item() == pytest.approx(0.85)


def _two_clusters(n_low, low_range, n_high, high_range, label=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n_low, generator=g) * (low_range[1] - low_range[0]) + low_range[0]
    high = torch.rand(n_high, generator=g) * (high_range[1] - high_range[0]) + high_range[0]
    return torch.cat([low, high]), _labels(n_low + n_high, label)


def test_dynamic_thresholds_move_towards_scores():
    policy = DynamicThreshold(num_classes=2, momentum=0.9, min_count=50)
    scores, labels = _two_clusters(300, (0.05, 0.35), 100, (0.65, 0.85))
    for _ in range(5):
        policy.update(scores, labels)
    thr = policy.thresholds()
    # Class 0: low sits in the gap between the clusters, high at the upper cluster's centre.
    assert 0.35 <= thr['low'][0].item() <= 0.65
    assert thr['high'][0].item() == pytest.approx(0.75, abs=0.02)
    # Class 1 saw nothing and keeps its initial thresholds.
    assert thr['high'][1].item() == pytest.approx(0.9)
    assert thr['low'][1].item() == pytest.approx(0.5)
    assert int(policy.num_updates) == 5
    # The split follows: a 0.8 detection of class 0 is now confident, 0.5 ignored.
    split = policy(torch.tensor([0.8, 0.5, 0.8]), torch.tensor([0, 0, 1]))
    assert split.confident.tolist() == [True, False, False]
    assert split.ignored.tolist() == [False, True, True]


def test_dynamic_thresholds_respect_floors_and_ceilings():
    policy = DynamicThreshold(num_classes=2, momentum=0.5, min_count=10, high_floor=0.5,
                              high_ceil=0.95, low_floor=0.2, low_ceil=0.8)
    high_scores, _ = _two_clusters(100, (0.5, 0.7), 100, (0.97, 1.0), seed=1)
    low_scores, _ = _two_clusters(100, (0.0, 0.1), 100, (0.25, 0.35), seed=2)
    scores = torch.cat([high_scores, low_scores])
    labels = torch.cat([_labels(200, 0), _labels(200, 1)])
    policy.update(scores, labels)
    thr = policy.thresholds()
    assert thr['high'][0].item() == pytest.approx(0.95)  # ceiling (cluster centre ~0.985)
    assert thr['high'][1].item() == pytest.approx(0.5)  # floor (cluster centre ~0.3)
    assert thr['low'][1].item() == pytest.approx(0.2)  # floor (boundary ~0.17)
    assert (thr['low'] <= thr['high']).all()


def test_dynamic_min_count_and_decay():
    policy = DynamicThreshold(num_classes=1, momentum=0.5, min_count=100)
    scores, labels = _two_clusters(30, (0.1, 0.2), 30, (0.6, 0.7))
    policy.update(scores, labels)  # 60 scores < 100: thresholds stay
    assert policy.thresholds()['high'].item() == pytest.approx(0.9)
    policy.update(scores, labels)  # decayed count 0.5 * 60 + 60 = 90 < 100
    assert policy.thresholds()['high'].item() == pytest.approx(0.9)
    assert policy.score_hist.sum().item() == pytest.approx(90.0)
    policy.update(scores, labels)  # 0.5 * 90 + 60 = 105: now it moves
    assert policy.thresholds()['high'].item() == pytest.approx(0.65, abs=0.02)


def test_dynamic_decay_keeps_momentum_of_the_old_scores_not_one_minus_it():
    """The histogram keeps ``momentum`` of its past (``hist = momentum * hist + batch``),
    and so do the image counts of the count cap; with momentum 0.9 (not 0.5, where
    ``momentum == 1 - momentum``) a swap of the two weights shows."""
    policy = DynamicThreshold(num_classes=1, momentum=0.9, min_count=100)
    scores, labels = _two_clusters(30, (0.1, 0.2), 30, (0.6, 0.7))
    policy.update(scores, labels)  # 60 scores < 100: thresholds stay
    assert policy.thresholds()['high'].item() == pytest.approx(0.9)
    policy.update(scores, labels)  # 0.9 * 60 + 60 = 114 >= 100: now it moves
    assert policy.score_hist.sum().item() == pytest.approx(114.0)
    assert policy.thresholds()['high'].item() == pytest.approx(0.65, abs=0.02)
    # The count cap compares boxes per image: histogram and image counts decay alike, so
    # the same data every step gives the cap of test_count_cap_raises_high_... (0.94).
    kwargs = dict(num_classes=2, momentum=0.9, min_count=10, high_ceil=0.8, low_ceil=0.5)
    capped = DynamicThreshold(count_cap=1.0, **kwargs)
    per_image = [0.91, 0.91, 0.93, 0.93, 0.97, 0.97] + [0.1] * 4 + [0.95, 0.05]
    scores, labels = torch.tensor(per_image * 4), torch.tensor(([0] * 10 + [1, 1]) * 4)
    for _ in range(3):
        capped.update_labeled(torch.tensor([0, 0, 1, 1, 1] * 4), num_images=4)
        capped.update(scores, labels, num_images=4)
    assert capped.thresholds()['high'][0].item() == pytest.approx(0.94)
    assert capped(scores[:12], labels[:12]).confident[:10].sum().item() == 2


def test_dynamic_state_dict_round_trip_and_weights_only_load(tmp_path):
    policy = DynamicThreshold(num_classes=3, momentum=0.8, min_count=20)
    scores, labels = _two_clusters(200, (0.05, 0.4), 80, (0.7, 0.9))
    labels = torch.arange(len(scores)) % 3
    policy.update(scores, labels)
    path = tmp_path / 'policy.pth'
    torch.save(policy.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert set(state) == {'high_thr', 'low_thr', 'score_hist', 'num_updates'}
    restored = DynamicThreshold(num_classes=3, momentum=0.8, min_count=20)
    restored.load_state_dict(state)
    for key, value in policy.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    # Same future: the same update gives identical thresholds and splits.
    more, more_labels = _two_clusters(50, (0.3, 0.5), 50, (0.8, 0.95), seed=3)
    more_labels = torch.arange(100) % 3
    policy.update(more, more_labels)
    restored.update(more, more_labels)
    assert torch.equal(policy.high_thr, restored.high_thr)
    assert torch.equal(policy.low_thr, restored.low_thr)
    assert torch.equal(policy(more, more_labels).confident, restored(more, more_labels).confident)
    # A fresh policy really differs, so the equalities above are not vacuous.
    assert not torch.equal(DynamicThreshold(num_classes=3).high_thr, restored.high_thr)


@pytest.mark.parametrize('kwargs, match', [
    (dict(high_floor=0.96), 'high_floor <= high_ceil'),
    (dict(low_floor=0.6), 'low_floor <= high_floor'),
    (dict(momentum=1.0), r'momentum must lie in \[0, 1\)'),
    (dict(init_high=0.4), r'init_low > init_high'),
    (dict(low_ceil=1.5), r'must lie in \[0, 1\]'),
    (dict(num_bins=1), 'num_bins'),
])
def test_dynamic_rejects_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicThreshold(num_classes=2, **kwargs)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank_main(rank, port, kwargs, batches, out_dir):
    """One rank of a two-process gloo group (a forked child): update a DynamicThreshold
    with this rank's batches and save its state (or the traceback)."""
    try:
        torch.set_num_threads(1)  # a forked child must not reuse the parent's thread pool
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                                world_size=2)
        policy = DynamicThreshold(**kwargs)
        for scores, labels in batches:
            policy.update(scores, labels)
        torch.save(policy.state_dict(), osp.join(out_dir, f'rank{rank}.pt'))
        dist.destroy_process_group()
    except BaseException:
        with open(osp.join(out_dir, f'rank{rank}.err'), 'w') as f:
            f.write(traceback.format_exc())
        raise


def test_dynamic_thresholds_agree_across_ranks(tmp_path):
    """Two ranks that see DIFFERENT scores end every update with the same histogram and
    thresholds: those of one process fed both ranks' scores (each update's histogram is
    summed over ranks before it is added)."""
    kwargs = dict(num_classes=2, momentum=0.8, min_count=20)
    per_rank = [[], []]
    for it in range(4):  # rank 0 sees lower scores than rank 1, in different numbers
        s0, _ = _two_clusters(40, (0.05, 0.3), 15, (0.55, 0.7), seed=10 + it)
        s1, _ = _two_clusters(25, (0.2, 0.45), 30, (0.8, 0.95), seed=20 + it)
        per_rank[0].append((s0, torch.arange(len(s0)) % 2))
        per_rank[1].append((s1, (torch.arange(len(s1)) + it) % 2))
    # fork: the children share the imports already done here (a fresh interpreter would
    # spend seconds importing mmdet)
    context = multiprocessing.get_context('fork')
    port = _free_port()
    procs = [context.Process(target=_rank_main,
                             args=(rank, port, kwargs, per_rank[rank], str(tmp_path)))
             for rank in range(2)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(timeout=60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    errors = ''.join(p.read_text() for p in tmp_path.glob('*.err'))
    assert [p.exitcode for p in procs] == [0, 0], errors or 'a rank timed out'
    states = [torch.load(tmp_path / f'rank{rank}.pt', weights_only=True) for rank in range(2)]

    single = DynamicThreshold(**kwargs)
    alone = DynamicThreshold(**kwargs)  # rank 0's scores only
    for (s0, l0), (s1, l1) in zip(*per_rank):
        single.update(torch.cat([s0, s1]), torch.cat([l0, l1]))
        alone.update(s0, l0)
    for state in states:
        assert int(state['num_updates']) == 4
        torch.testing.assert_close(state['score_hist'], single.score_hist, rtol=0, atol=1e-9)
        torch.testing.assert_close(state['high_thr'], single.high_thr, rtol=0, atol=1e-6)
        torch.testing.assert_close(state['low_thr'], single.low_thr, rtol=0, atol=1e-6)
    # the thresholds moved, and a rank on its own would have ended elsewhere
    assert not torch.equal(single.high_thr, DynamicThreshold(**kwargs).high_thr)
    assert (single.high_thr - alone.high_thr).abs().max() > 0.05


def test_two_means_centres():
    hist = torch.zeros(2, 10, dtype=torch.float64)
    hist[0, 1], hist[0, 2] = 10, 30  # 0.15 x10, 0.25 x30: centre 0.225
    hist[0, 8] = 10  # 0.85
    hist[1, 4] = 5  # one bin only: no split
    lower, upper, valid = two_means(hist)
    assert valid.tolist() == [True, False]
    assert lower[0].item() == pytest.approx(0.225)
    assert upper[0].item() == pytest.approx(0.85)


def test_matched_threshold_takes_the_cluster_centres():
    """HSSDA's rule: high and low are the two 2-means centres, where DynamicThreshold's low is
    the boundary between the clusters."""
    scores, labels = _two_clusters(300, (0.3, 0.4), 300, (0.7, 0.8))
    matched = MatchedScoreThreshold(num_classes=2, momentum=0.5, min_count=10,
                                    low_floor=0.1, high_ceil=0.95)
    dynamic = DynamicThreshold(num_classes=2, momentum=0.5, min_count=10, low_floor=0.1,
                               high_ceil=0.95)
    for policy in (matched, dynamic):
        policy.update(scores, labels)
    assert matched.high_thr[0].item() == pytest.approx(0.75, abs=0.01)
    assert matched.low_thr[0].item() == pytest.approx(0.35, abs=0.01)
    assert dynamic.low_thr[0].item() == pytest.approx(0.55, abs=0.06)  # the boundary
    assert matched.high_thr[1].item() == pytest.approx(0.9)  # class 1 unseen: initial
    assert matched.score_source == 'labeled_matched' and dynamic.score_source == 'teacher'
    with pytest.raises(ValueError, match='match_iou'):
        MatchedScoreThreshold(num_classes=2, match_iou=0.0)


def test_count_cap_raises_high_until_the_teacher_finds_no_more_than_the_labeled_images():
    """A teacher with 6 boxes of class 0 per image above 0.9 (a few objects and many look-
    alikes) against 2 per labeled image: class 0's high rises to the edge that leaves 2 per
    image, above ``high_ceil`` (which holds the uncapped one at 0.8); class 1 (fewer teacher
    boxes than labeled ones) keeps its threshold."""
    kwargs = dict(num_classes=2, momentum=0.5, min_count=10, high_ceil=0.8, low_ceil=0.5)
    capped = DynamicThreshold(count_cap=1.0, **kwargs)
    free = DynamicThreshold(**kwargs)
    # per image: class 0 at 0.91 x2, 0.93 x2, 0.97 x2 and 0.1 x4; class 1 at 0.95 and 0.05
    per_image = [0.91, 0.91, 0.93, 0.93, 0.97, 0.97] + [0.1] * 4 + [0.95, 0.05]
    per_label = [0] * 10 + [1, 1]
    scores = torch.tensor(per_image * 4)
    labels = torch.tensor(per_label * 4)
    for _ in range(3):
        capped.update_labeled(torch.tensor([0, 0, 1, 1, 1] * 4), num_images=4)  # 2 and 3
        capped.update(scores, labels, num_images=4)
        free.update(scores, labels, num_images=4)
    high = capped.thresholds()['high']
    assert high[0].item() == pytest.approx(0.94)  # above the 0.93 pair: 2 per image left
    assert free.thresholds()['high'][0].item() == pytest.approx(0.8)
    assert high[1].item() == pytest.approx(free.thresholds()['high'][1].item())
    split = capped(scores[:12], labels[:12])
    assert split.confident[:10].sum().item() == 2  # the two 0.97 boxes of class 0
    assert split.ignored[:6].sum().item() == 4  # the surplus waits in the ignored band
    # half as many labeled objects per image: the cap halves the confident boxes
    half = DynamicThreshold(count_cap=0.5, **kwargs)
    for _ in range(3):
        half.update_labeled(torch.tensor([0, 0, 1, 1, 1] * 4), num_images=4)
        half.update(scores, labels, num_images=4)
    assert half.thresholds()['high'][0].item() == pytest.approx(0.98)
    assert set(capped.state_dict()) >= {'labeled_boxes', 'labeled_images', 'teacher_images'}
    with pytest.raises(ValueError, match='num_images'):
        capped.update(scores, labels)
    with pytest.raises(ValueError, match='count_cap'):
        DynamicThreshold(num_classes=2, count_cap=0)


def test_share_cap_raises_high_until_each_class_holds_its_labeled_share():
    """Labeled boxes: class 0 half, class 1 half. The teacher, per unlabeled image: class 0
    at 0.91 x2, 0.93 x2, 0.97 x2 (6 confident), class 1 at 0.95 x2, class 2 at 0.99: 9
    confident boxes, of which class 0 may keep 4.5 (its half) and so rises above the 0.91
    pair; class 1 (under its
    share) keeps its threshold. Class 2 (0.99 once per image) was never labeled: it keeps
    no confident box. Unlike the count cap, 10 times fewer objects per labeled image change
    nothing (shares, not counts); the labeled counts are totals, not decayed."""
    kwargs = dict(num_classes=3, momentum=0.5, min_count=10, high_ceil=0.8, low_ceil=0.5)
    per_image = [0.91, 0.91, 0.93, 0.93, 0.97, 0.97] + [0.1] * 4 + [0.95, 0.95, 0.05] + [
        0.99, 0.05]
    per_label = [0] * 10 + [1, 1, 1] + [2, 2]
    scores = torch.tensor(per_image * 4)
    labels = torch.tensor(per_label * 4)

    def run(labeled, share_cap=1.0, steps=3):
        policy = DynamicThreshold(share_cap=share_cap, **kwargs)
        for step in range(steps):
            policy.update_labeled(labeled if step == 0 else torch.tensor([], dtype=torch.long),
                                  num_images=4)
            policy.update(scores, labels, num_images=4)
        return policy

    free = DynamicThreshold(**kwargs)
    for _ in range(3):
        free.update(scores, labels, num_images=4)
    capped = run(torch.tensor([0, 1] * 20))
    high = capped.thresholds()['high']
    assert free.thresholds()['high'][0].item() == pytest.approx(0.8)
    assert high[0].item() == pytest.approx(0.92)  # 4 of class 0 per image left: 0.93, 0.97
    assert high[1].item() == pytest.approx(free.thresholds()['high'][1].item())
    assert high[2].item() == pytest.approx(1.0)
    split = capped(scores[:15], labels[:15])
    assert split.confident[:10].sum().item() == 4
    assert split.ignored[:6].sum().item() == 2  # the 0.91 pair waits in the ignored band
    assert split.confident[10:12].all() and not split.confident[13:].any()
    assert capped.labeled_class_total.tolist() == [20, 20, 0]
    # the same shares from 10x fewer labeled boxes: same thresholds
    sparse = run(torch.tensor([0, 1] * 2))
    assert torch.equal(sparse.thresholds()['high'], high)
    # class 0 a quarter of the labeled boxes: 2 of the 9 confident boxes per image
    quarter = run(torch.tensor([0, 1, 1, 1] * 10))
    assert quarter.thresholds()['high'][0].item() == pytest.approx(0.94)
    # a looser cap: 1.5 x its half of the 9, all 6 of class 0's boxes stay
    loose = run(torch.tensor([0, 1] * 20), share_cap=1.5)
    assert loose.thresholds()['high'][0].item() == pytest.approx(0.8)
    assert set(capped.state_dict()) >= {'labeled_class_total', 'teacher_images'}
    assert 'labeled_class_total' not in free.state_dict()
    with pytest.raises(ValueError, match='num_images'):
        capped.update(scores, labels)
    with pytest.raises(ValueError, match='share_cap'):
        DynamicThreshold(num_classes=2, share_cap=-1)


def test_share_floor_lowers_high_until_each_class_holds_its_labeled_share():
    """Labeled boxes: class 0 half, class 1 half. The teacher, per unlabeled image: class 0
    at 0.955 x4, class 1 at 0.755, 0.655, 0.555, 0.455, class 2 (never labeled) at 0.995,
    each with low-scored background. At high 0.8 (its floor and ceiling) 5 boxes per image
    are confident, none of class 1, which should hold half: 2.5 per image, so its high
    comes down to 0.55 (3 boxes), and no further than ``share_floor_thr``. Class 0 holds
    more than its share and keeps 0.8; lowering never raises a threshold (class 2)."""
    kwargs = dict(num_classes=3, momentum=0.5, min_count=10, high_floor=0.8, high_ceil=0.8,
                  low_ceil=0.7)
    per_image = [0.955] * 4 + [0.105] * 4 + [0.755, 0.655, 0.555, 0.455] + [0.105] * 4 + [
        0.995, 0.055]
    per_label = [0] * 8 + [1] * 8 + [2, 2]
    scores = torch.tensor(per_image * 4)
    labels = torch.tensor(per_label * 4)

    def run(steps=3, **options):
        policy = DynamicThreshold(**kwargs, **options)
        for step in range(steps):
            labeled = torch.tensor([0, 1] * 20 if step == 0 else [], dtype=torch.long)
            policy.update_labeled(labeled, num_images=4)
            policy.update(scores, labels, num_images=4)
        return policy

    free = run()
    assert free.thresholds()['high'].tolist() == pytest.approx([0.8] * 3)
    floored = run(share_floor=1.0)
    high, low = floored.thresholds()['high'], floored.thresholds()['low']
    assert high.tolist() == pytest.approx([0.8, 0.55, 0.8])
    assert torch.equal(low, free.thresholds()['low'])
    split = floored(scores[:18], labels[:18])
    assert split.confident[8:16].tolist() == [True] * 3 + [False] * 5
    # half the floor: 1.25 boxes per image, the two boxes from 0.65 up
    assert run(share_floor=0.5).thresholds()['high'][1].item() == pytest.approx(0.65)
    # not below share_floor_thr
    assert run(share_floor=1.0, share_floor_thr=0.7).thresholds()['high'][1].item() == \
        pytest.approx(0.7)
    # a floor no class can reach within its boxes: every labeled class goes down to 0.5, and
    # low follows high down (class 0's Otsu low, 0.525, is above it)
    deep = run(share_floor=2.0)
    assert deep.thresholds()['high'].tolist() == pytest.approx([0.5, 0.5, 0.8])
    assert free.thresholds()['low'][0].item() > 0.5
    assert deep.thresholds()['low'][0].item() == pytest.approx(0.5)
    # with the cap as well, the never-labeled class is capped away and class 1 floored
    both = run(share_floor=1.0, share_cap=1.0)
    assert both.thresholds()['high'].tolist() == pytest.approx([0.8, 0.55, 1.0])
    assert {'labeled_class_total', 'teacher_images'} <= set(floored.state_dict())
    with pytest.raises(ValueError, match='num_images'):
        floored.update(scores, labels)
    with pytest.raises(ValueError, match='share_floor'):
        DynamicThreshold(num_classes=2, share_floor=0)
    with pytest.raises(ValueError, match='must not exceed share_cap'):
        DynamicThreshold(num_classes=2, share_floor=1.5, share_cap=1.0)
    with pytest.raises(ValueError, match='share_floor_thr'):
        DynamicThreshold(num_classes=2, share_floor=1.0, share_floor_thr=0.1)


def test_dynamic_low_never_exceeds_high_when_low_ceil_is_above_high_ceil():
    """Bounds may allow low_ceil > high_ceil; Otsu's boundary (about 0.8 here) then sits
    above the clamped high (0.5), and low must come down to high, not stay above it."""
    policy = DynamicThreshold(num_classes=1, momentum=0.5, min_count=10, high_floor=0.3,
                              high_ceil=0.5, low_floor=0.2, low_ceil=0.9)
    scores, labels = _two_clusters(100, (0.6, 0.7), 100, (0.95, 1.0), seed=4)
    policy.update(scores, labels)
    thr = policy.thresholds()
    assert thr['high'].item() == pytest.approx(0.5)
    assert thr['low'].item() == pytest.approx(0.5)  # not Otsu's 0.8
    split = policy(torch.tensor([0.55, 0.45]), torch.tensor([0, 0]))
    assert split.confident.tolist() == [True, False] and not split.ignored.any()
