"""A tiny model obeying the TeacherStudent contract, and a minimal runner, for engine tests.

Imported by the tests as ``engine_fakes`` (pytest puts this folder on sys.path).
"""
import copy
import itertools
from typing import Callable, Optional

import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

_ids = itertools.count()


def unique_name(prefix: str) -> str:
    """A fresh name for mmengine's global instances (MessageHub, Visualizer)."""
    return f'{prefix}_{next(_ids)}'


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


class FakeTeacherStudent(BaseModel):
    """The model contract of ssl_det's TeacherStudent, with two small conv nets.

    The teacher starts different from the student (+1 on every parameter and float
    buffer) so that a copy is visible.
    """

    def __init__(self, make_net: Callable[[], nn.Module] = small_net,
                 data_preprocessor: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.student = make_net()
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        with torch.no_grad():
            for t in float_tensors(self.teacher):
                t.add_(1.0)
        self.teacher.eval()
        self.unsup_active = False
        self.predict_on = 'teacher'
        self.latest_pseudo = None
        self.loss_calls = []  # unsup_active seen by each loss computation

    def train(self, mode: bool = True) -> 'FakeTeacherStudent':
        super().train(mode)
        self.teacher.eval()  # the contract: the teacher stays in eval mode
        return self

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            self.loss_calls.append(self.unsup_active)
            return dict(loss=self.student(inputs).pow(2).mean())
        out = getattr(self, self.predict_on)(inputs)
        if mode == 'predict':
            return [dict(member=self.predict_on, value=float(o.mean())) for o in out]
        return out


class PlainModel(BaseModel):
    """A model without teacher and student (a plain detector)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_net()

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        out = self.net(inputs)
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        if mode == 'predict':
            return [dict(member='plain', value=float(o.mean())) for o in out]
        return out


class ImageDataset(Dataset):
    """``n`` fixed random 3x8x8 images, as dicts the default collate stacks."""

    def __init__(self, n: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, 8, 8, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=self.images[idx])


class FakeRunner:
    """The parts of mmengine's Runner the hooks use; ``iter`` is set by the test."""

    def __init__(self, model: nn.Module, iter: int = 0, visualizer=None) -> None:
        self.model = model
        self.iter = iter
        self.visualizer = visualizer
        self.message_hub = MessageHub.get_instance(unique_name('fake_runner'))


def float_tensors(net: nn.Module):
    return [t for t in itertools.chain(net.parameters(), net.buffers())
            if t.is_floating_point()]


def fake_step(model: FakeTeacherStudent, iteration: int) -> None:
    """A deterministic stand-in for the optimizer step (and BN statistics update) of
    ``iteration``: the same student change whatever the run."""
    g = torch.Generator().manual_seed(1000 + iteration)
    with torch.no_grad():
        for t in float_tensors(model.student):
            t.add_(0.1 * torch.randn(t.shape, generator=g))
        for b in model.student.buffers():
            if not b.is_floating_point():
                b.add_(1)


def run_iters(hook, runner: FakeRunner, iterations, step=fake_step) -> None:
    """Call the hook around each iteration as the train loop does."""
    for i in iterations:
        runner.iter = i
        hook.before_train_iter(runner, batch_idx=i)
        step(runner.model, i)
        hook.after_train_iter(runner, batch_idx=i)


class MeanValueMetric(BaseMetric):
    """``fake/value``: the mean of the predicted values over the val set."""

    default_prefix = 'fake'

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(sample['value'] for sample in data_samples)

    def compute_metrics(self, results: list) -> dict:
        return dict(value=sum(results) / len(results))


class Recorder(Hook):
    """Records what later hooks and loops see: runs after the NORMAL-priority hooks."""

    priority = 'LOW'

    def __init__(self) -> None:
        self.unsup_active = {}
        self.before = {}
        self.after = {}
        self.val_metrics = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        model = runner.model
        self.unsup_active[runner.iter] = model.unsup_active
        self.before[runner.iter] = copy.deepcopy(model.state_dict())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.after[runner.iter] = copy.deepcopy(runner.model.state_dict())

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.val_metrics.append(dict(metrics))


def make_runner(work_dir, model, **kwargs) -> Runner:
    """A real mmengine Runner over ImageDataset batches of 2, quiet, with a unique name."""
    loader = dict(dataset=ImageDataset(4), batch_size=2, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    if kwargs.pop('train', False):
        kwargs.update(train_dataloader=copy.deepcopy(loader),
                      optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)))
    if 'val_cfg' in kwargs:
        kwargs.update(val_dataloader=loader, val_evaluator=Evaluator(MeanValueMetric()))
    kwargs.setdefault('default_scope', 'ssl_det')  # as ssl_det's configs: bare names are ours
    return Runner(model=model, work_dir=str(work_dir), experiment_name=unique_name('exp'),
                  log_level='WARNING', **kwargs)


def mean_prediction(net: nn.Module, dataset: ImageDataset) -> float:
    """What MeanValueMetric reports for ``net`` (in eval mode) on ``dataset``."""
    net.eval()
    with torch.no_grad():
        return float(net(dataset.images).mean(dim=(1, 2, 3)).mean())
