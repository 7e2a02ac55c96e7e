"""SupLossGuard: the unlabeled loss's weight is halved while the labeled loss runs well above
its start, never in a healthy run, and the state survives a checkpoint."""
import pytest
import torch

from ssl_det.models.detectors.teacher_student import sum_losses
from ssl_det.models.utils import sup_loss_guard
from ssl_det.models.utils.sup_loss_guard import SupLossGuard


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(sup_loss_guard, 'print_log',
                        lambda msg, logger=None, level=None: seen.append(msg))
    return seen


def feed(guard, losses):
    return [guard.update(torch.tensor(v)) for v in losses]


def test_a_rising_labeled_loss_halves_the_weight_with_a_cooldown(warnings):
    guard = SupLossGuard(rise=1.5, ref_iters=10, momentum=0.5, cooldown=5, min_scale=0.25)
    scales = feed(guard, [1.0] * 10 + [3.0] * 30)  # the student unlearns the labels
    assert scales[:10] == [1.0] * 10 and float(guard.ref) == pytest.approx(1.0)
    first = scales.index(0.5)
    assert first == 10  # EMA 2.0 > 1.5 at the first look
    assert scales[first:first + 5] == [0.5] * 5  # the cooldown
    assert scales[first + 5] == 0.25 and scales[-1] == 0.25  # the floor
    assert len(warnings) == 2
    assert 'the labeled loss rose to 2.000, 2.00x its 1.000' in warnings[0]
    assert 'scaled 1 -> 0.5' in warnings[0] and 'sup_loss_guard=None' in warnings[0]


def test_a_healthy_run_is_left_alone(warnings):
    guard = SupLossGuard()
    torch.manual_seed(0)
    # a falling, noisy labeled loss (batch-to-batch spread of +-30%)
    losses = (torch.linspace(1.0, 0.4, 1000) * (1 + 0.3 * (2 * torch.rand(1000) - 1)))
    assert set(feed(guard, losses.tolist())) == {1.0}
    assert not warnings


def test_non_finite_losses_are_not_counted(warnings):
    guard = SupLossGuard(ref_iters=2)
    feed(guard, [1.0, float('nan'), 1.0, float('inf')])
    assert int(guard.count) == 2 and float(guard.ref) == 1.0


def test_off_and_bad_arguments():
    guard = SupLossGuard(rise=None)
    assert feed(guard, [1.0] * 10 + [100.0] * 50)[-1] == 1.0
    for kwargs in (dict(rise=1.0), dict(ref_iters=0), dict(momentum=1.0), dict(cooldown=0),
                   dict(min_scale=0)):
        with pytest.raises(ValueError):
            SupLossGuard(**kwargs)


def test_the_state_is_saved_and_restored():
    guard = SupLossGuard(ref_iters=2, cooldown=1, momentum=0.5)
    feed(guard, [1.0, 1.0, 5.0, 5.0])
    assert float(guard.scale) == 0.25
    resumed = SupLossGuard(ref_iters=2, cooldown=1, momentum=0.5)
    resumed.load_state_dict(guard.state_dict())
    assert float(resumed.scale) == 0.25 and int(resumed.count) == 4
    assert feed(resumed, [5.0]) == [0.125]


def test_sum_losses_as_mmengine_parses_them():
    losses = dict(loss_cls=torch.tensor([1.0, 3.0]), loss_rpn=[torch.tensor(1.0),
                                                               torch.tensor([2.0, 4.0])],
                  acc=torch.tensor(90.0))
    assert float(sum_losses(losses)) == pytest.approx(2.0 + 1.0 + 3.0)


def test_teacher_student_scales_the_unlabeled_losses():
    from mmengine.config import Config

    from demo_helpers import ROOT
    from ssl_det.registry import MODELS
    cfg = Config.fromfile(f'{ROOT}/configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
    model = MODELS.build(cfg.model)
    losses = dict(loss_cls=torch.tensor(2.0), acc=torch.tensor(50.0))
    out = model.finish_unsup_losses(dict(losses), 4.0, {}, 'cpu')
    assert float(out['unsup_loss_cls']) == 8.0 and float(out['unsup_weight_scale']) == 1.0
    model.unsup_guard.scale.fill_(0.25)
    out = model.finish_unsup_losses(dict(losses), 4.0, {}, 'cpu')
    assert float(out['unsup_loss_cls']) == 2.0 and float(out['unsup_weight_scale']) == 0.25
    assert float(out['unsup_acc']) == 50.0  # not a loss: not weighted
    off = MODELS.build(dict(cfg.model, sup_loss_guard=None))
    assert 'unsup_weight_scale' not in off.finish_unsup_losses(dict(losses), 4.0, {}, 'cpu')
