"""tools/misc/export_model.py: one network of a teacher-student checkpoint as a plain
MMDetection checkpoint + config, run by mmdet in a process that never imports ssl_det."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import uuid

import pytest
import torch

from demo_helpers import ROOT, as_cli, data_overrides
from tools import test as test_tool
from tools import train as train_tool
from tools.misc import export_model as export_tool

SEMI_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
SUP_CFG = osp.join(ROOT, 'configs/demo/faster-rcnn_r18_fpn_demo_sup-10pct.py')
CFG_3D = osp.join(ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py')
ITERS = 3
# A model trained for 3 iterations scores low: keep its boxes so that there is something to
# compare (the default 0.05 may leave none).
SCORE_THR = 0.01

# Runs with mmdet alone: load the exported files, check the keys strictly, predict, and
# print the detections as JSON; ssl_det must never have been imported.
MMDET_ONLY = r'''
import json, sys
import torch
from mmdet.apis import DetInferencer, init_detector, inference_detector
config, checkpoint, images, folder, out_dir = sys.argv[1:6]
images = images.split(',')
model = init_detector(config, checkpoint, device='cpu')
state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
model.load_state_dict(state, strict=True)  # no missing or unexpected keys
results = [dict(bboxes=r.pred_instances.bboxes.tolist(),
                scores=r.pred_instances.scores.tolist(),
                labels=r.pred_instances.labels.tolist())
           for r in inference_detector(model, images)]
# the command printed for users: DetInferencer on a folder of images (predictions written
# to out_dir/preds/<image name>.json)
DetInferencer(model=config, weights=checkpoint, device='cpu')(
    folder, out_dir=out_dir, no_save_pred=False)
assert 'ssl_det' not in sys.modules, sorted(m for m in sys.modules if 'ssl_det' in m)
print(json.dumps(dict(classes=list(model.dataset_meta['classes']), results=results)))
'''


def _unique(prefix: str) -> dict:
    """mmengine keeps runs' message hubs and visualizers by name: one name per runner."""
    return {'experiment_name': f'{prefix}_{uuid.uuid4().hex[:8]}',
            'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}'}


@pytest.fixture(scope='module')
def trained(tiny_demo, tmp_path_factory):
    """A 3-iteration mean-teacher run on the tiny demo data: its last checkpoint and the
    config the runner dumped into the work dir (with the test's overrides)."""
    work_dir = tmp_path_factory.mktemp('export_train')
    opts = data_overrides(tiny_demo, semi=True)
    opts.update({'train_cfg.max_iters': ITERS, 'train_cfg.val_begin': ITERS + 1,
                 'default_hooks.checkpoint.interval': ITERS,
                 'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                 'custom_hooks.2.burn_in_iters': 1,  # then the teacher is an EMA, not a copy
                 'custom_hooks.3.interval': 0,
                 'model.pseudo_label.min_count': 1,
                 'model.detector.test_cfg.rcnn.score_thr': SCORE_THR,
                 **_unique('export')})
    runner = train_tool.build_runner(train_tool.parse_args(
        [SEMI_CFG, '--work-dir', str(work_dir), '--cfg-options', *as_cli(opts)]))
    runner.train()
    checkpoint = work_dir / f'iter_{ITERS}.pth'
    config = work_dir / osp.basename(SEMI_CFG)
    assert checkpoint.is_file() and config.is_file()
    return dict(root=tiny_demo, checkpoint=str(checkpoint), config=str(config))


def _images(root: str, num: int = 3) -> list:
    return sorted(glob.glob(osp.join(root, 'images', 'val', '*.png')))[:num]


def _mmdet_only_env() -> dict:
    """The environment without PYTHONPATH entries that reach the repository."""
    env = dict(os.environ)
    paths = [p for p in env.pop('PYTHONPATH', '').split(os.pathsep)
             if p and not osp.abspath(p).startswith(ROOT)]
    if paths:
        env['PYTHONPATH'] = os.pathsep.join(paths)
    return env


def _ssl_det_predictions(trained: dict, images: list) -> list:
    """ssl_det's own detections: the checkpoint loaded as tools/test.py loads it (fast
    RoIAlign swapped in), the TeacherStudent model with predict_on='teacher' run through
    mmdet's inference entry point (test pipeline, MultiBranchDataPreprocessor,
    ``test_step``)."""
    from mmdet.apis import inference_detector
    opts = dict(data_overrides(trained['root'], semi=True), **_unique('export_ref'))
    opts['model.detector.test_cfg.rcnn.score_thr'] = SCORE_THR
    runner = test_tool.build_runner(test_tool.parse_args(
        [SEMI_CFG, trained['checkpoint'], '--predict-on', 'teacher',
         '--work-dir', osp.join(osp.dirname(trained['checkpoint']), 'ref'),
         '--cfg-options', *as_cli(opts)]))
    runner.load_checkpoint(trained['checkpoint'], map_location='cpu')
    model = runner.model
    assert model.predict_on == 'teacher'
    assert 'ssl_det' in type(model.teacher.roi_head.bbox_roi_extractor.roi_layers[0]).__module__
    model.cfg = runner.cfg
    model.eval()
    return [dict(bboxes=r.pred_instances.bboxes, scores=r.pred_instances.scores,
                 labels=r.pred_instances.labels) for r in inference_detector(model, images)]


def test_teacher_export_runs_in_mmdet_alone_with_ssl_det_detections(trained, tmp_path):
    out = tmp_path / 'exported'
    # the command line a user runs, in its own process
    done = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/misc/export_model.py'), trained['checkpoint'],
         '--config', trained['config'], '--which', 'teacher', '--out', str(out)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    name = osp.splitext(osp.basename(SEMI_CFG))[0] + '_teacher'
    ckpt_file, cfg_file = str(out / f'{name}.pth'), str(out / f'{name}.py')
    assert ckpt_file in done.stdout and cfg_file in done.stdout
    assert 'DetInferencer' in done.stdout

    # the checkpoint: the teacher's weights under the detector's keys, nothing else
    exported = torch.load(ckpt_file, weights_only=True)
    source = torch.load(trained['checkpoint'], weights_only=True)['state_dict']
    teacher = {k[len('teacher.'):]: v for k, v in source.items() if k.startswith('teacher.')}
    assert sorted(exported['state_dict']) == sorted(teacher)
    for key, value in teacher.items():
        assert torch.equal(exported['state_dict'][key], value), key
    classes = ['circle', 'square', 'triangle', 'cross', 'star']
    assert exported['meta']['dataset_meta']['classes'] == classes
    # the config: plain mmdet
    text = open(cfg_file).read()
    assert "default_scope = 'mmdet'" in text
    for ssl_name in ('ssl_det', 'TeacherStudent', 'MultiBranch', 'IgnoreAware',
                     'custom_imports'):
        assert ssl_name not in text, ssl_name
    assert "type='DetDataPreprocessor'" in text and "type='MaxIoUAssigner'" in text

    # mmdet alone, outside the repository, on demo images
    images = _images(trained['root'])
    folder = tmp_path / 'my_images'
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder)
    workdir = tmp_path / 'elsewhere'
    workdir.mkdir()
    run = subprocess.run(
        [sys.executable, '-c', MMDET_ONLY, cfg_file, ckpt_file, ','.join(images), str(folder),
         str(tmp_path / 'outputs')],
        cwd=str(workdir), env=_mmdet_only_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    mmdet = json.loads(run.stdout.strip().splitlines()[-1])
    assert mmdet['classes'] == classes
    assert len(glob.glob(str(tmp_path / 'outputs' / 'vis' / '*.png'))) == len(images)

    ours = _ssl_det_predictions(trained, images)
    assert len(ours) == len(mmdet['results']) == len(images)
    assert sum(len(r['scores']) for r in ours) > 0, 'no detections to compare'
    for image, ref, got in zip(images, ours, mmdet['results']):
        assert len(got['scores']) == len(ref['scores'])
        assert torch.allclose(torch.tensor(got['bboxes']).reshape(-1, 4), ref['bboxes'],
                              atol=1e-4, rtol=0)
        assert torch.allclose(torch.tensor(got['scores']), ref['scores'], atol=1e-4, rtol=0)
        assert got['labels'] == ref['labels'].tolist()
        # the folder form (DetInferencer) gives the same detections
        stem = osp.splitext(osp.basename(image))[0]
        in_folder = json.load(open(tmp_path / 'outputs' / 'preds' / f'{stem}.json'))
        assert in_folder['labels'] == got['labels']
        assert torch.allclose(torch.tensor(in_folder['scores']), torch.tensor(got['scores']),
                              atol=1e-4, rtol=0)


def test_student_export_differs_from_teacher(trained, tmp_path):
    written = {which: export_tool.main([trained['checkpoint'], '--config', trained['config'],
                                        '--which', which, '--out', str(tmp_path)])
               for which in ('teacher', 'student')}
    assert written['teacher']['checkpoint'] != written['student']['checkpoint']
    teacher, student = (torch.load(written[w]['checkpoint'], weights_only=True)['state_dict']
                        for w in ('teacher', 'student'))
    assert sorted(teacher) == sorted(student)
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)
    source = torch.load(trained['checkpoint'], weights_only=True)['state_dict']
    for key, value in student.items():
        assert torch.equal(value, source[f'student.{key}']), key


def test_ssl_det_assigner_becomes_mmdet_s(trained, tmp_path):
    """A config naming ssl_det's IgnoreAwareMaxIoUAssigner exports mmdet's MaxIoUAssigner."""
    written = export_tool.main([
        trained['checkpoint'], '--config', trained['config'], '--out', str(tmp_path),
        '--cfg-options',
        'model.detector.train_cfg.rcnn.assigner.type=ssl_det.IgnoreAwareMaxIoUAssigner'])
    assert written['which'] == 'teacher'  # the config's predict_on
    text = open(written['config']).read()
    assert 'IgnoreAware' not in text and "type='MaxIoUAssigner'" in text


def test_supervised_checkpoint_exports_its_detector(trained, tmp_path):
    """A plain detector checkpoint (no teacher/student prefix) with a supervised config:
    --which is ignored and the keys are kept."""
    source = torch.load(trained['checkpoint'], weights_only=True)['state_dict']
    plain = {k[len('student.'):]: v for k, v in source.items() if k.startswith('student.')}
    ckpt = tmp_path / 'supervised.pth'
    torch.save(dict(state_dict=plain, meta=dict(iter=7)), str(ckpt))
    written = export_tool.main([str(ckpt), '--config', SUP_CFG, '--which', 'teacher',
                                '--out', str(tmp_path / 'out')])
    assert written['which'] is None
    assert osp.basename(written['checkpoint']) == 'faster-rcnn_r18_fpn_demo_sup-10pct.pth'
    exported = torch.load(written['checkpoint'], weights_only=True)
    assert sorted(exported['state_dict']) == sorted(plain)
    assert exported['meta']['iter'] == 7


def test_wrong_config_is_refused_by_the_strict_key_check(trained, tmp_path):
    """Weights that do not fit the config's detector (here an FPN with an extra conv) are
    an error that names the missing keys, not a silently half-loaded model."""
    with pytest.raises(SystemExit, match='do not match the mmdet detector.*fpn_convs.4'):
        export_tool.main([trained['checkpoint'], '--config', trained['config'],
                          '--out', str(tmp_path), '--cfg-options',
                          'model.detector.neck.add_extra_convs=on_input'])
    assert not os.listdir(tmp_path)


def test_point_cloud_detector_needs_ssl_det(tmp_path):
    ckpt = tmp_path / 'fake.pth'
    torch.save({'state_dict': {'teacher.w': torch.zeros(1), 'student.w': torch.ones(1)}},
               str(ckpt))
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exc:
        export_tool.main([str(ckpt), '--config', CFG_3D, '--out', str(out)])
    message = str(exc.value)
    assert 'PillarDetector' in message and 'needs ssl_det' in message
    assert 'Box3DAPMetric' in message and 'LoadPointsFromFile' in message
    assert not out.exists()


def test_without_which_the_network_that_predicts_is_exported():
    """Without ``--which`` the export takes the network the wrapper predicts with:
    ``predict_on`` (ssl_det), ``semi_test_cfg.predict_on`` (mmdet), else the teacher, as
    ``TeacherStudent``'s default; the weights are that network's, prefix stripped."""
    from ssl_det.utils.export import default_network, select_weights
    state = {'teacher.w': torch.zeros(2), 'student.w': torch.ones(2),
             'pseudo_label.high_thr': torch.ones(3)}
    cases = [(dict(type='TeacherStudent'), 'teacher', 0.0),
             (dict(type='TeacherStudent', predict_on='student'), 'student', 1.0),
             (dict(type='SoftTeacher', semi_test_cfg=dict(predict_on='student')), 'student', 1.0),
             (dict(type='SoftTeacher', semi_test_cfg=dict(predict_on='teacher')), 'teacher', 0.0)]
    for model_cfg, network, value in cases:
        assert default_network(model_cfg) == network, model_cfg
        weights, taken = select_weights(state, default_network(model_cfg))
        assert taken == network and list(weights) == ['w']
        assert torch.equal(weights['w'], torch.full((2, ), value))
