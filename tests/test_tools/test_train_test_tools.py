"""tools/train.py and tools/test.py end to end on tiny generated data (a few iterations)."""
import glob
import importlib
import math
import os
import re
import os.path as osp
import shutil
import uuid

import pytest
import torch

from demo_helpers import ROOT, as_cli, data_overrides
from ssl_det.utils.checkpoint import UntrustedCheckpointError, trust_checkpoints
from tools import test as test_tool
from tools import train as train_tool

SUP_CFG = osp.join(ROOT, 'configs/demo/faster-rcnn_r18_fpn_demo_sup-all.py')


def train_args(root, work_dir, iters=2, *extra):
    opts = data_overrides(root)
    opts.update({'train_cfg.max_iters': iters, 'train_cfg.val_interval': 1000,
                 'default_hooks.checkpoint.interval': 1, 'default_hooks.logger.interval': 1,
                 'default_hooks.checkpoint.max_keep_ckpts': 5,
                 'train_dataloader.batch_size': 2,
                 'experiment_name': f'test_{uuid.uuid4().hex[:8]}'})
    return [SUP_CFG, '--work-dir', str(work_dir), *extra, '--cfg-options', *as_cli(opts)]


@pytest.fixture(scope='module')
def trained(tiny_demo, tmp_path_factory):
    """Two iterations of the supervised demo config; checkpoints at 1 and 2."""
    work_dir = tmp_path_factory.mktemp('train')
    runner = train_tool.build_runner(train_tool.parse_args(train_args(tiny_demo, work_dir)))
    runner.train()
    return work_dir


def test_train_writes_weights_only_checkpoints(trained):
    ckpt = osp.join(trained, 'iter_2.pth')
    assert osp.isfile(ckpt)
    checkpoint = torch.load(ckpt, weights_only=True)  # ssl_det checkpoints need no pickle trust
    assert checkpoint['meta']['iter'] == 2
    weights = checkpoint['state_dict']
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    log = open(glob.glob(osp.join(trained, '*', '*.log'))[0]).read()
    losses = [float(v) for v in re.findall(r'Iter\(train\).*? loss: ([-\d.e+naif]+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_test_tool_evaluates_checkpoint(tiny_demo, trained, tmp_path):
    opts = data_overrides(tiny_demo)
    opts['experiment_name'] = f'test_{uuid.uuid4().hex[:8]}'
    metrics = test_tool.main([SUP_CFG, osp.join(trained, 'iter_2.pth'), '--work-dir',
                              str(tmp_path), '--cfg-options', *as_cli(opts)])
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
    assert 'coco/bbox_mAP_50' in metrics


def test_resume_restores_identical_state(tiny_demo, trained, tmp_path):
    saved = torch.load(osp.join(trained, 'iter_1.pth'), weights_only=True)
    args = train_tool.parse_args(train_args(tiny_demo, tmp_path, 3, '--resume',
                                            osp.join(trained, 'iter_1.pth')))
    runner = train_tool.build_runner(args)
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    runner.load_or_resume()
    assert runner.iter == 1
    model_state = runner.model.state_dict()
    for key, value in saved['state_dict'].items():
        assert torch.equal(model_state[key], value), key
    opt_state = runner.optim_wrapper.state_dict()
    for idx, state in saved['optimizer']['state'].items():
        assert torch.equal(opt_state['state'][idx]['momentum_buffer'], state['momentum_buffer'])
    hub = runner.message_hub.state_dict()['log_scalars']
    assert 'train/loss' in hub
    saved_loss = saved['message_hub']['log_scalars']['train/loss']
    assert list(hub['train/loss'].data[0]) == saved_loss['log_history'].tolist()


def test_resume_then_continue_training(tiny_demo, trained, tmp_path):
    shutil.copy(osp.join(trained, 'iter_1.pth'), tmp_path / 'iter_1.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_1.pth'))
    runner = train_tool.build_runner(train_tool.parse_args(
        train_args(tiny_demo, tmp_path, 2, '--resume')))
    runner.train()
    assert runner.iter == 2 and osp.isfile(tmp_path / 'iter_2.pth')


def test_load_from_fills_the_model(tiny_demo, trained, tmp_path):
    saved = torch.load(osp.join(trained, 'iter_2.pth'), weights_only=True)['state_dict']
    args = train_args(tiny_demo, tmp_path, 1)
    args += [f'load_from={osp.join(trained, "iter_2.pth")}']
    runner = train_tool.build_runner(train_tool.parse_args(args))
    runner.load_or_resume()
    key = next(k for k in saved if k.endswith('weight'))
    assert torch.equal(runner.model.state_dict()[key], saved[key])


class _Payload:
    """Unpickling this creates a directory: the stand-in for arbitrary code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_untrusted_pickle_is_refused_and_trust_is_explicit(tiny_demo, tmp_path):
    marker = tmp_path / 'code_ran'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Payload(str(marker))}, evil)
    args = train_args(tiny_demo, tmp_path / 'w', 1) + [f'load_from={evil}']
    runner = train_tool.build_runner(train_tool.parse_args(args))
    with pytest.raises(UntrustedCheckpointError, match='--trust-checkpoint'):
        runner.load_or_resume()
    assert not marker.exists()
    try:
        args = train_args(tiny_demo, tmp_path / 'w2', 1, '--trust-checkpoint')
        runner = train_tool.build_runner(train_tool.parse_args(args + [f'load_from={evil}']))
        runner.load_or_resume()
        assert marker.exists()  # the user said they trust it: full unpickling ran
    finally:
        trust_checkpoints(False)


@pytest.mark.parametrize('fast', [True, False])
def test_train_tool_swaps_in_ssl_det_roi_align_and_nms(tiny_demo, tmp_path, fast):
    from mmcv.ops import RoIAlign as MMCVRoIAlign
    from ssl_det.ops import RoIAlign
    from ssl_det.ops.nms import _FastCPUNMSExt, use_fast_cpu_nms
    mmcv_nms = importlib.import_module('mmcv.ops.nms')
    use_fast_cpu_nms(not fast)  # the opposite of what the run should leave
    extra = [] if fast else ['fast_roi_align=False', 'fast_nms=False']
    args = train_args(tiny_demo, tmp_path) + extra
    try:
        runner = train_tool.build_runner(train_tool.parse_args(args))
        ours = [m for m in runner.model.modules() if isinstance(m, RoIAlign)]
        theirs = [m for m in runner.model.modules() if isinstance(m, MMCVRoIAlign)]
        assert (len(ours) > 0, len(theirs) > 0) == ((True, False) if fast else (False, True))
        # mmcv's NMS, which mmdet's heads call, runs ssl_det's kernel (same results)
        assert isinstance(mmcv_nms.ext_module, _FastCPUNMSExt) == fast
    finally:
        use_fast_cpu_nms(False)


def test_test_tool_evaluates_the_network_named_by_predict_on(tiny_demo, tmp_path):
    """tools/test.py --predict-on: a teacher-student checkpoint is evaluated on the network
    the flag names, teacher or student; a plain detector's config refuses the flag."""
    semi_cfg = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
    checkpoint = tmp_path / 'semi.pth'
    checkpoint.write_bytes(b'')  # only its existence is checked before the test loop runs
    for which in ('student', 'teacher'):
        name = f'predict_on_{uuid.uuid4().hex[:8]}'
        opts = dict(data_overrides(tiny_demo, semi=True), experiment_name=name)
        opts['visualizer.name'] = name
        runner = test_tool.build_runner(test_tool.parse_args(
            [semi_cfg, str(checkpoint), '--predict-on', which, '--work-dir',
             str(tmp_path / which), '--cfg-options', *as_cli(opts)]))
        assert runner.model.predict_on == which
    with pytest.raises(ValueError, match='teacher-student models only'):
        test_tool.build_runner(test_tool.parse_args(
            [SUP_CFG, str(checkpoint), '--predict-on', 'student', '--work-dir',
             str(tmp_path / 'sup')]))
