"""SkipNonFiniteOptimWrapper skips a step whose gradient is not finite or a spike: the
weights stay as they were (finite), the skip is counted, and normal steps go on."""
import math

import pytest
import torch
import torch.nn as nn

from ssl_det.engine.optim_wrapper import SkipNonFiniteOptimWrapper


def make(**kwargs):
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    wrapper = SkipNonFiniteOptimWrapper(
        torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), **kwargs)
    return net, wrapper


def step(net, wrapper, scale=1.0, seed=0):
    torch.manual_seed(seed)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    loss = ((net(x) - y) ** 2).mean() * scale
    wrapper.update_params(loss)


def weights(net):
    return [p.detach().clone() for p in net.parameters()]


def test_a_spike_leaves_the_weights_and_training_goes_on():
    net, wrapper = make(spike_min_steps=5)
    for i in range(6):
        step(net, wrapper, seed=i)
    assert not wrapper.last_step_skipped and len(wrapper.recent_norms) == 6
    before = weights(net)
    step(net, wrapper, scale=1e6, seed=6)  # finite, a million times the usual gradient
    assert wrapper.last_step_skipped and wrapper.skip_reason == 'gradient spike'
    assert wrapper.num_skipped == wrapper.consecutive_skips == 1
    assert wrapper.last_grad_norm > 1e4 * sorted(wrapper.recent_norms)[3]
    assert all(torch.equal(a, b) for a, b in zip(before, weights(net)))
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())  # zeroed
    assert len(wrapper.recent_norms) == 6  # the spike is not part of the median
    step(net, wrapper, seed=7)
    assert not wrapper.last_step_skipped and wrapper.consecutive_skips == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(net)))


def test_without_the_guard_the_same_spike_throws_the_weights():
    """What the guard prevents: the same step applied."""
    net, wrapper = make(spike_ratio=None, spike_min_steps=5)
    for i in range(6):
        step(net, wrapper, seed=i)
    step(net, wrapper, scale=1e6, seed=6)
    assert not wrapper.last_step_skipped
    assert max(float(p.abs().max()) for p in net.parameters()) > 1e3


def test_no_spike_is_looked_for_before_the_median_is_measured():
    net, wrapper = make(spike_min_steps=5)
    for i in range(4):
        step(net, wrapper, seed=i)
    step(net, wrapper, scale=1e3, seed=4)
    assert not wrapper.last_step_skipped  # 4 steps: too few to call anything a spike


def test_normal_variation_is_not_a_spike():
    net, wrapper = make(spike_min_steps=5)
    for i in range(40):  # losses vary batch to batch and fall as it trains
        step(net, wrapper, scale=1.0 + (i % 5), seed=i)
    assert wrapper.num_skipped == 0


@pytest.mark.parametrize('finite_loss', [True, False])
def test_a_non_finite_gradient_leaves_the_weights_finite(finite_loss):
    net, wrapper = make()
    step(net, wrapper)
    before = weights(net)
    x = torch.randn(8, 4)
    x[0, 0] = float('nan')
    out = net(x)
    # a finite loss can still have a NaN gradient: 0 * NaN in the weight's gradient
    loss = torch.where(torch.isfinite(out), out, 0).sum() if finite_loss else out.sum()
    wrapper.update_params(loss)
    assert wrapper.last_step_skipped
    assert wrapper.skip_reason == ('gradient' if finite_loss else 'loss')
    assert not math.isfinite(wrapper.last_grad_norm)
    after = weights(net)
    assert all(torch.isfinite(w).all() for w in after)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize('kwargs', [dict(spike_ratio=1.0), dict(spike_ratio=0),
                                    dict(spike_window=0), dict(spike_min_steps=0)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)
