"""The demo's two-stage protocol (tools/demo.py, benchmarks/label_efficiency.py): every
stage-2 run continues the stage-1 checkpoint with the same seed; finished runs are reused
only when their config and options are the same."""
import glob
import os.path as osp

from demo_helpers import as_cli, data_overrides
from ssl_det.utils import experiment


def run_log(work_dir):
    return ''.join(open(p).read() for p in glob.glob(osp.join(work_dir, '*', '*.log')))


def data_options(root, semi=False):
    opts = data_overrides(root, semi)
    del opts['load_from']  # two_stage sets it: the stage-1 checkpoint
    return as_cli(opts)


def test_stage_two_continues_stage_one_and_reuse_follows_options(tiny_demo, tmp_path):
    sup = data_options(tiny_demo) + ['train_dataloader.batch_size=2']
    semi = data_options(tiny_demo, semi=True) + [
        'train_dataloader.batch_size=2', 'train_dataloader.sampler.batch_size=2',
        'custom_hooks.3.interval=0', 'model.pseudo_label.min_count=1']
    options = {'pretrain_10pct': sup, 'sup': sup, 'mean_teacher': semi}
    results = experiment.two_stage(['sup', 'mean_teacher'], 7, str(tmp_path), 2, 2, options)

    stage1 = results['pretrain_10pct']
    checkpoint = osp.join(stage1['work_dir'], 'iter_2.pth')
    assert osp.isfile(checkpoint) and stage1['work_dir'].startswith(str(tmp_path / 'seed7'))
    for name in ('sup', 'mean_teacher'):
        log = run_log(results[name]['work_dir'])
        assert f'Load checkpoint from {checkpoint}' in log, name
        assert "seed=7" in log or 'seed: 7' in log, name
        assert results[name]['seconds'] is not None
    assert 'teacher/coco/bbox_mAP' in results['mean_teacher']['metrics']
    assert 'coco/bbox_mAP' in results['sup']['metrics']

    again = experiment.two_stage(['sup', 'mean_teacher'], 7, str(tmp_path), 2, 2, options,
                                 reuse=True)
    assert all(r['seconds'] is None for r in again.values())
    assert again['mean_teacher']['metrics'] == results['mean_teacher']['metrics']

    options['mean_teacher'] = semi + ['model.unsup_weight=0.5']  # another config: trained
    changed = experiment.two_stage(['sup', 'mean_teacher'], 7, str(tmp_path), 2, 2, options,
                                   reuse=True)
    assert changed['sup']['seconds'] is None and changed['mean_teacher']['seconds'] is not None


def test_config_digest_follows_the_resolved_settings(tmp_path, monkeypatch):
    """A reused run must have the same settings: the digest changes when a base changes."""
    base = tmp_path / 'base.py'
    child = tmp_path / 'child.py'
    base.write_text('a = 1\n')
    child.write_text("_base_ = ['./base.py']\nb = 2\n")
    first = experiment.config_digest(str(child))
    assert experiment.config_digest(str(child)) == first
    base.write_text('a = 3\n')
    assert experiment.config_digest(str(child)) != first
