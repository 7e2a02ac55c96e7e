"""Multi-branch point-cloud batches: point_cloud_collate and the data preprocessors."""
import torch

from ssl_det.datasets import point_cloud_collate
from ssl_det.registry import MODELS
from ssl_det.structures import PointCloudDataSample

BRANCHES = ('sup', 'unsup_teacher', 'unsup_student')


def _scene(index, labeled):
    """What MultiBranch packs for one scene: its branches' clouds (``10 - index`` points
    whose values are ``index``, the student's negated) and samples, None elsewhere."""
    present = ('sup', ) if labeled else ('unsup_teacher', 'unsup_student')
    inputs, samples = {}, {}
    for branch in BRANCHES:
        if branch not in present:
            inputs[branch] = samples[branch] = None
            continue
        sign = -1.0 if branch == 'unsup_student' else 1.0
        inputs[branch] = dict(points=torch.full((10 - index, 4), sign * index))
        samples[branch] = PointCloudDataSample(metainfo=dict(frame_id=str(index)))
    return dict(inputs=inputs, data_samples=samples)


def test_each_unlabeled_scenes_two_views_stay_with_its_samples():
    """In a batch mixing labeled and unlabeled scenes, the teacher's (weak) and the
    student's (strong) cloud of each unlabeled scene come out at the position of that
    scene's data samples in both branches, so the two views paired are of one scene."""
    batch = point_cloud_collate([_scene(0, True), _scene(1, False), _scene(2, True),
                                 _scene(3, False), _scene(4, False)])
    preprocessor = MODELS.build(dict(type='MultiBranchDataPreprocessor',
                                     data_preprocessor=dict(type='PointCloudDataPreprocessor')))
    out = preprocessor(batch, training=True)
    for branch, sign, frames in (('sup', 1, [0, 2]), ('unsup_teacher', 1, [1, 3, 4]),
                                 ('unsup_student', -1, [1, 3, 4])):
        points = out['inputs'][branch]['points']
        assert [s.frame_id for s in out['data_samples'][branch]] == [str(f) for f in frames]
        assert [len(p) for p in points] == [10 - f for f in frames], branch
        for cloud, frame in zip(points, frames):
            assert torch.equal(cloud, torch.full((10 - frame, 4), sign * frame)), branch
