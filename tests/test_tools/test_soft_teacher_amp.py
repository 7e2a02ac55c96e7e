"""ssl_det's SoftTeacher trains under mixed precision (issue #20): float16 autocast with
mmengine's ``AmpOptimWrapper`` on CUDA, bfloat16 autocast on the CPU where CUDA is absent.
A few steps of the demo's Faster R-CNN on the demo data, with thresholds an untrained
teacher passes so that every kind of pseudo box flows: the losses stay finite, the forward
really ran in low precision, the student's weights move and stay finite, and so does the
EMA teacher."""
import contextlib
import copy
import math
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import Runner

from demo_helpers import ROOT
from ssl_det.engine.hooks import MeanTeacherHook
from ssl_det.ops import replace_roi_align
from ssl_det.registry import MODELS

CFG = osp.join(ROOT, 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
STEPS = 3


def demo_batches(cfg, root, count):
    """``count`` batches of 2 labeled + 2 unlabeled images through the config's pipelines."""
    loader = copy.deepcopy(cfg.train_dataloader)
    for dataset in loader.dataset.datasets:
        dataset.data_root = root.rstrip('/') + '/'
    loader.update(num_workers=0, persistent_workers=False, batch_size=4)
    loader.sampler.update(batch_size=4, source_ratio=[1, 1], seed=0)
    dataloader = Runner.build_dataloader(loader, seed=0)
    batches, it = [], iter(dataloader)
    while len(batches) < count:
        try:
            batches.append(next(it))
        except StopIteration:  # an epoch is one pass over the (few) labeled images
            it = iter(dataloader)
    return batches


def mixed_precision(model, device):
    """The optimizer wrapper and the autocast context of the issue's AMP setting."""
    sgd = torch.optim.SGD(model.student.parameters(), lr=0.01, momentum=0.9)
    if device == 'cuda':
        optim = AmpOptimWrapper(optimizer=sgd, dtype='float16', loss_scale='dynamic')
        return optim, lambda: optim.optim_context(model), torch.float16
    return (OptimWrapper(sgd), lambda: torch.autocast('cpu', dtype=torch.bfloat16),
            torch.bfloat16)


def test_soft_teacher_trains_under_autocast(tiny_demo):
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    cfg = Config.fromfile(CFG)
    cfg.model.pseudo_label = dict(type='FixedThreshold', score_thr=0.05)  # replaces it
    cfg.model.update(initial_score_thr=0.05, rpn_pseudo_thr=0.05, reg_pseudo_thr=10.0)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    replace_roi_align(model)  # as tools/train.py does
    model.teacher.load_state_dict(model.student.state_dict())
    model.to(device).train()
    optim, autocast, low = mixed_precision(model, device)
    ema = MeanTeacherHook(momentum_decay=0.99)
    trained = [k for k, p in model.student.named_parameters() if p.requires_grad]
    student_start = {k: v.clone() for k, v in model.student.state_dict().items()}
    teacher_start = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    seen = set()  # dtypes of the backbone's outputs: did the forward run in low precision?
    model.student.backbone.register_forward_hook(
        lambda module, args, out: seen.update(o.dtype for o in out))

    unsup_seen = set()
    for step, batch in enumerate(demo_batches(cfg, tiny_demo, STEPS)):
        torch.manual_seed(step)
        data = model.data_preprocessor(batch, True)
        with autocast():
            losses = model.loss(data['inputs'], data['data_samples'])
            loss, log_vars = model.parse_losses(losses)
        optim.update_params(loss)
        ema.ema_update(model, 0.99)
        assert torch.isfinite(loss), (step, log_vars)
        for key, value in log_vars.items():
            assert math.isfinite(value), (step, key, value)
        unsup_seen.update(k for k, v in log_vars.items() if k.startswith('unsup_') and v > 0)

    assert low in seen, seen
    # pseudo boxes flowed: the unlabeled classification, RPN and regression losses trained
    assert {'unsup_loss_cls', 'unsup_loss_rpn_cls', 'unsup_loss_bbox'} <= unsup_seen, unsup_seen
    # the trained weights moved (SGD in the student, the EMA in the teacher); every float
    # tensor, buffers too, is finite
    for name, start, now in (('student', student_start, model.student.state_dict()),
                             ('teacher', teacher_start, model.teacher.state_dict())):
        assert all(torch.isfinite(v).all() for v in now.values() if v.is_floating_point()), name
        moved = [k for k in trained if not torch.equal(now[k], start[k])]
        assert len(moved) > len(trained) // 2, (name, len(moved), len(trained))
