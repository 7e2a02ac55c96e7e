"""Honest counters: an unreadable unlabeled file counts once per draw, whatever the number of
views, and the skip counters (unreadable files, non-finite steps) survive a resume."""
import copy
import json
import pickle

import cv2
import numpy as np
import pytest
import torch
from engine_fakes import FakeRunner, FakeTeacherStudent, ImageDataset, make_runner
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader

from ssl_det.datasets import CocoDataset
from ssl_det.engine.hooks import DataCheckHook, NonFiniteGuardHook
from ssl_det.engine.hooks.data_check_hook import skipped_in_batch
from ssl_det.engine.optim_wrapper import SkipNonFiniteOptimWrapper

BRANCHES = ['sup', 'unsup_teacher', 'unsup_student']
VIEW = dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'img_shape', 'flip'))


@pytest.fixture
def pool(tmp_path):
    """An unlabeled COCO pool of three images, the first a truncated JPEG, loaded once and
    viewed twice (weak: flipped, strong: as loaded) by mmdet's MultiBranch."""
    names = ['bad.jpg', 'good1.png', 'good2.png']
    for name in names:
        image = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / name), image)
    data = (tmp_path / 'bad.jpg').read_bytes()
    (tmp_path / 'bad.jpg').write_bytes(data[:len(data) // 2])
    ann = dict(images=[dict(id=i + 1, file_name=n, width=32, height=24)
                       for i, n in enumerate(names)],
               annotations=[], categories=[dict(id=1, name='thing')])
    (tmp_path / 'unlabeled.json').write_text(json.dumps(ann))
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadEmptyAnnotations'),
                dict(type='MultiBranch', branch_field=BRANCHES,
                     unsup_teacher=[dict(type='RandomFlip', prob=1.0), VIEW],
                     unsup_student=[VIEW])]
    dataset = CocoDataset(ann_file=str(tmp_path / 'unlabeled.json'),
                          data_prefix=dict(img=str(tmp_path) + '/'),
                          filter_cfg=dict(filter_empty_gt=False), pipeline=pipeline)
    assert dataset.skips_unreadable()
    return dataset


def through_a_worker(sample: dict) -> dict:
    """What a DataLoader worker hands the main process: every view pickled on its own, so
    no two views share an object (the harshest case)."""
    views = sample['data_samples']
    return dict(inputs=sample['inputs'],
                data_samples={k: pickle.loads(pickle.dumps(v)) for k, v in views.items()})


def test_both_views_carry_the_record(pool):
    sample = pool[0]  # bad.jpg: good1.png taken instead
    views = sample['data_samples']
    assert views['sup'] is None
    teacher, student = views['unsup_teacher'], views['unsup_student']
    assert teacher.img_path.endswith('good1.png') and student.img_path.endswith('good1.png')
    assert teacher.flip and 'flip' not in student  # two different views of one draw
    for view in (teacher, student):
        assert len(view.skipped_unreadable) == 1
        assert 'bad.jpg' in view.skipped_unreadable[0] and 'truncated JPEG' in \
            view.skipped_unreadable[0]
    assert teacher.skipped_unreadable is not student.skipped_unreadable  # copies already
    assert 'skipped_unreadable' not in pool[1]['data_samples']['unsup_student']


def test_one_draw_counts_once_two_draws_twice(pool):
    one = pseudo_collate([through_a_worker(pool[0]), through_a_worker(pool[1])])
    assert len(skipped_in_batch(one)) == 1
    two = pseudo_collate([through_a_worker(pool[0]), through_a_worker(pool[0])])
    skipped = skipped_in_batch(two)
    assert len(skipped) == 2 and all('bad.jpg' in s for s in skipped)
    # the hook's count and the logged scalar follow
    runner = FakeRunner(None)
    hook = DataCheckHook()
    for iteration, batch in enumerate([one, two]):
        runner.iter = iteration
        hook.before_train_iter(runner, batch_idx=iteration, data_batch=batch)
    assert hook.num_skipped == 3
    assert runner.message_hub.get_scalar('train/skipped_unreadable').current() == 3


def test_counts_through_a_real_worker_process(pool):
    """A DataLoader with one worker process: batches of [bad, good] and [bad, bad]."""
    loader = DataLoader(pool, batch_sampler=[[0, 2], [0, 0]], num_workers=1,
                        collate_fn=pseudo_collate)
    counts = [len(skipped_in_batch(batch)) for batch in loader]
    assert counts == [1, 2]


def test_record_without_token_counts_once_per_list(pool):
    """Records made elsewhere (no token) keep the old rule: one per list object."""
    sample = pool[0]
    for view in sample['data_samples'].values():
        if view is not None:
            del view.skipped_unreadable_token
    shared = sample['data_samples']['unsup_teacher'].skipped_unreadable
    sample['data_samples']['unsup_student'].set_field(shared, 'skipped_unreadable',
                                                      field_type='metainfo')
    assert len(skipped_in_batch(pseudo_collate([sample]))) == 1


def saved_and_loaded(checkpoint: dict, tmp_path) -> dict:
    """A checkpoint written and read back as a resumed run reads it."""
    torch.save(checkpoint, tmp_path / 'ckpt.pth')
    return torch.load(tmp_path / 'ckpt.pth', weights_only=True)


def resuming(runner: FakeRunner, resume: bool = True) -> FakeRunner:
    runner._resume = resume  # mmengine's Runner(resume=...)
    return runner


def wrapper_for(model) -> SkipNonFiniteOptimWrapper:
    return SkipNonFiniteOptimWrapper(
        optimizer=torch.optim.SGD(model.student.parameters(), lr=0.1))


def test_data_check_hook_counter_survives_a_resume(tmp_path):
    hook = DataCheckHook()
    hook.num_skipped = 7
    checkpoint = dict(meta=dict(iter=10))
    hook.before_save_checkpoint(FakeRunner(None), checkpoint)
    loaded = saved_and_loaded(checkpoint, tmp_path)
    assert loaded['ssl_det_counters'] == dict(skipped_unreadable=7)

    resumed = DataCheckHook()
    resumed.after_load_checkpoint(resuming(FakeRunner(None)), loaded)
    assert resumed.num_skipped == 7
    runner = FakeRunner(None)
    resumed.before_train_iter(runner, batch_idx=0, data_batch=dict(data_samples=[]))
    assert runner.message_hub.get_scalar('train/skipped_unreadable').current() == 7
    # load_from (a new run from trained weights) starts counting afresh
    fresh = DataCheckHook()
    fresh.after_load_checkpoint(resuming(FakeRunner(None), resume=False), loaded)
    assert fresh.num_skipped == 0


def test_non_finite_counters_survive_a_resume(tmp_path):
    model = FakeTeacherStudent()
    runner = FakeRunner(model)
    runner.optim_wrapper = wrapper_for(model)
    runner.optim_wrapper.num_skipped, runner.optim_wrapper.consecutive_skips = 5, 2
    checkpoint = dict(meta=dict(iter=10))
    DataCheckHook().before_save_checkpoint(runner, checkpoint)  # both write one dict
    NonFiniteGuardHook().before_save_checkpoint(runner, checkpoint)
    loaded = saved_and_loaded(checkpoint, tmp_path)
    assert loaded['ssl_det_counters'] == dict(skipped_unreadable=0, nonfinite_skips=5,
                                              nonfinite_consecutive_skips=2)

    resumed = resuming(FakeRunner(model))
    resumed.optim_wrapper = wrapper_for(model)
    NonFiniteGuardHook().after_load_checkpoint(resumed, loaded)
    assert (resumed.optim_wrapper.num_skipped, resumed.optim_wrapper.consecutive_skips) == \
        (5, 2)
    # a wrapper built after the checkpoint was read gets them before training starts
    late = resuming(FakeRunner(model))
    hook = NonFiniteGuardHook()
    hook.after_load_checkpoint(late, loaded)
    late.optim_wrapper = wrapper_for(model)
    hook.before_train(late)
    assert (late.optim_wrapper.num_skipped, late.optim_wrapper.consecutive_skips) == (5, 2)
    # load_from starts afresh
    new_run = resuming(FakeRunner(model), resume=False)
    new_run.optim_wrapper = wrapper_for(model)
    NonFiniteGuardHook().after_load_checkpoint(new_run, loaded)
    assert (new_run.optim_wrapper.num_skipped, new_run.optim_wrapper.consecutive_skips) == \
        (0, 0)


class NanAt(FakeTeacherStudent):
    """A loss that is NaN at the given training iterations (counted by loss calls)."""

    def __init__(self, nan_at) -> None:
        super().__init__()
        self.nan_at, self.calls = set(nan_at), 0

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        out = super().forward(inputs, data_samples, mode)
        if mode == 'loss':
            self.calls += 1
            if self.calls in self.nan_at:
                out = dict(loss=out['loss'] * float('nan'))
        return out


def test_real_runner_resume_continues_the_non_finite_counts(tmp_path):
    """mmengine's Runner, ``max_consecutive_skips=3``: iterations 2 and 3 NaN, a checkpoint
    after 3; the resumed run's first iteration (4) NaN again is the third in a row, so the
    run stops there, with 3 skips counted."""
    loader = dict(dataset=ImageDataset(4), batch_size=2, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    common = dict(train_dataloader=loader, train_cfg=dict(by_epoch=False, max_iters=3),
                  optim_wrapper=dict(type='SkipNonFiniteOptimWrapper', max_consecutive_skips=3,
                                     optimizer=dict(type='SGD', lr=0.1)),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3,
                                                     by_epoch=False)),
                  custom_hooks=[dict(type='NonFiniteGuardHook'),
                                dict(type='SafeCheckpointHook')])
    first = make_runner(tmp_path, NanAt({2, 3}), **copy.deepcopy(common))
    first.train()
    assert (first.optim_wrapper.num_skipped, first.optim_wrapper.consecutive_skips) == (2, 2)
    common['train_cfg']['max_iters'] = 6
    resumed = make_runner(tmp_path, NanAt({1}), resume=True,
                          load_from=str(tmp_path / 'iter_3.pth'), **common)
    with pytest.raises(RuntimeError, match='3 optimizer steps in a row'):
        resumed.train()
    assert resumed.iter == 3  # stopped inside iteration 4
    assert resumed.optim_wrapper.num_skipped == 3
    assert resumed.message_hub.get_scalar('train/nonfinite_skips').current() == 3
