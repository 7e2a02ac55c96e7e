"""GMMThreshold: Consistent-Teacher's per-class Gaussian-mixture thresholds."""
import math

import pytest
import torch

from ssl_det.models.pseudo_labels import DynamicThreshold, GMMThreshold, fit_two_gaussians
from ssl_det.registry import TASK_UTILS


def mixture_scores(n, low, high, frac_high, seed=0):
    """Scores of a background-like and an object-like Gaussian, clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    n_high = int(n * frac_high)
    parts = [torch.randn(n - n_high, generator=g) * low[1] + low[0],
             torch.randn(n_high, generator=g) * high[1] + high[0]]
    return torch.cat(parts).clamp(0, 0.9999)


def boundary(level, low, high, frac_high):
    """Independent oracle: the score in [low mean, high mean] where the true mixture's
    upper posterior reaches ``level``, by bisection on the closed-form densities."""
    def posterior(s):
        def density(mean, std, weight):
            return weight * math.exp(-(s - mean)**2 / (2 * std**2)) / std
        up = density(high[0], high[1], frac_high)
        return up / (up + density(low[0], low[1], 1 - frac_high))
    a, b = low[0], high[0]
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if posterior(mid) < level else (a, mid)
    return (a + b) / 2


def histogram(scores, bins=100):
    return torch.histc(scores.double(), bins=bins, min=0, max=1)[None]


BOUNDS = dict(min_count=10, momentum=0.9, high_floor=0.05, high_ceil=0.99, low_floor=0.01,
              low_ceil=0.99)


def fitted(dists):
    """A GMMThreshold (wide bounds) updated once with 20,000 scores of each class's mixture
    (``dists``: per class, (background mean, sd), (object mean, sd), object share); with
    the scores and labels it saw."""
    policy = GMMThreshold(num_classes=len(dists), **BOUNDS)
    scores = [mixture_scores(20000, *d, seed=i) for i, d in enumerate(dists)]
    labels = [torch.full((len(s), ), i) for i, s in enumerate(scores)]
    scores, labels = torch.cat(scores), torch.cat(labels)
    policy.update(scores, labels)
    return policy, scores, labels


def test_em_recovers_two_gaussians():
    scores = mixture_scores(20000, (0.2, 0.06), (0.8, 0.05), 0.3)
    weights, means, variances, valid = fit_two_gaussians(histogram(scores))
    assert valid.item()
    torch.testing.assert_close(means[0], torch.tensor([0.2, 0.8], dtype=torch.float64),
                               atol=0.01, rtol=0)
    torch.testing.assert_close(weights[0], torch.tensor([0.7, 0.3], dtype=torch.float64),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(variances[0].sqrt(), torch.tensor([0.06, 0.05],
                                                                 dtype=torch.float64),
                               atol=0.01, rtol=0)


def test_thresholds_sit_where_the_mixture_says_object_per_class():
    # class 1's components overlap: its posterior rises slowly, so the level shows
    dists = [((0.2, 0.08), (0.7, 0.08), 0.3), ((0.3, 0.12), (0.6, 0.12), 0.4)]
    policy, scores, labels = fitted(dists)
    thr = policy.thresholds()
    for c, d in enumerate(dists):
        assert abs(thr['high'][c].item() - boundary(0.5, *d)) < 0.02, c
        assert abs(thr['low'][c].item() - boundary(0.1, *d)) < 0.02, c
        assert thr['low'][c] < thr['high'][c]
    # not DynamicThreshold's rule (the upper cluster's mean): the boundary sits lower
    dynamic = DynamicThreshold(num_classes=2, **BOUNDS)
    dynamic.update(scores, labels)
    assert (dynamic.thresholds()['high'] - thr['high'] > 0.1).all()
    # the split follows: a score just above the class-0 boundary is confident
    split = policy(torch.tensor([thr['high'][0] + 0.01, thr['low'][0] + 0.01, 0.05]),
                   torch.tensor([0, 0, 0]))
    assert split.confident.tolist() == [True, False, False]
    assert split.ignored.tolist() == [False, True, False]


def test_each_class_threshold_stays_above_its_own_lower_mean():
    """The confident threshold is searched at or above each class's own background mean:
    class 1's wide object component also explains scores far below its narrow background
    bump (0.4), but its threshold must sit between its two means, where class 1's mixture
    says object, not at a low score that only class 0's background mean (0.1) would allow."""
    dists = [((0.1, 0.05), (0.8, 0.05), 0.3), ((0.4, 0.03), (0.7, 0.15), 0.3)]
    high = fitted(dists)[0].thresholds()['high']
    for c, d in enumerate(dists):
        assert d[0][0] < high[c].item() < d[1][0], c
        assert abs(high[c].item() - boundary(0.5, *d)) < 0.03, c


def test_without_an_ignored_band():
    policy = GMMThreshold(num_classes=1, ignore_posterior=None, min_count=10, low_floor=0.0,
                          high_floor=0.05)
    assert not policy.can_ignore()
    assert policy.thresholds()['low'].item() == policy.thresholds()['high'].item()
    policy.update(mixture_scores(5000, (0.2, 0.08), (0.7, 0.08), 0.3), torch.zeros(5000).long())
    thr = policy.thresholds()
    assert thr['low'].item() == thr['high'].item()
    assert abs(thr['high'].item() - boundary(0.5, (0.2, 0.08), (0.7, 0.08), 0.3)) < 0.02


def test_builds_from_config_and_checks_arguments():
    policy = TASK_UTILS.build(dict(type='GMMThreshold', num_classes=3))
    assert isinstance(policy, GMMThreshold) and policy.can_ignore()
    assert 'score_hist' in policy.state_dict()
    with pytest.raises(ValueError, match='pos_posterior'):
        GMMThreshold(num_classes=1, pos_posterior=1.0)
    with pytest.raises(ValueError, match='ignore_posterior'):
        GMMThreshold(num_classes=1, pos_posterior=0.4, ignore_posterior=0.6)
