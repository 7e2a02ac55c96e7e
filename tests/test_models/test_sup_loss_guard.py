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


def test_the_reference_is_the_mean_of_the_first_iterations(warnings):
    """The labeled loss is compared with the MEAN of its first ``ref_iters`` values (2.0
    for 1, 2, 3), not with the first or the last of them: with rise 1.5 a loss of 2.9 is
    left alone and one of 3.5 halves the weight."""
    guard = SupLossGuard(rise=1.5, ref_iters=3, momentum=0.0, cooldown=1)
    assert feed(guard, [1.0, 2.0, 3.0]) == [1.0] * 3
    assert feed(guard, [2.9]) == [1.0]  # under 1.5 x 2.0 (a first-value reference: 1.5)
    assert feed(guard, [3.5]) == [0.5]  # over 1.5 x 2.0 (a last-value reference: 4.5)
    assert len(warnings) == 1 and '1.75x its 2.000 of the first 3' in warnings[0]


def test_teacher_student_guard_watches_the_labeled_loss_of_unlabeled_iterations(monkeypatch):
    """The guard's reference is the labeled loss of iterations WITH the unlabeled loss (a
    labeled-only iteration, as in the burn-in, is not counted), and it is the labeled loss
    (1 here), not the unlabeled one (2)."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmengine.config import Config
    from mmengine.structures import InstanceData

    from demo_helpers import ROOT
    from ssl_det.registry import MODELS
    cfg = Config.fromfile(
        f'{ROOT}/configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
    model = MODELS.build(dict(cfg.model, pseudo_label=dict(type='DualThreshold', high=0.8,
                                                             low=0.4)))
    pred = InstanceData(bboxes=torch.tensor([[10., 12., 30., 28.]]), scores=torch.tensor([0.95]),
                        labels=torch.tensor([1]))
    monkeypatch.setattr(model, 'teacher_predict',
                        lambda inputs, samples: [pred.clone() for _ in samples])
    monkeypatch.setattr(model.student, 'loss',
                        lambda inputs, samples: dict(loss_cls=inputs.mean()))

    def samples():
        shape, out = (64, 64), []
        for _ in range(2):
            out.append(DetDataSample(metainfo=dict(
                img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
                scale_factor=(1, 1), homography_matrix=np.eye(3, dtype=np.float32))))
            out[-1].gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]),
                                                labels=torch.tensor([0]))
        return out

    labeled = torch.ones(2, 3, 64, 64)
    model.loss({'sup': labeled}, {'sup': samples()})  # no unlabeled loss: not watched
    assert int(model.unsup_guard.count) == 0
    losses = model.loss({'sup': labeled, 'unsup_teacher': torch.zeros(2, 3, 64, 64),
                         'unsup_student': torch.full((2, 3, 64, 64), 2.0)},
                        {'sup': samples(), 'unsup_teacher': samples(),
                         'unsup_student': samples()})
    assert 'unsup_loss_cls' in losses
    assert int(model.unsup_guard.count) == 1 and float(model.unsup_guard.ref) == 1.0
