"""Re-estimate BatchNorm statistics once the weights are trained (PreciseBN): a teacher's on
the views of the branches its student trains on, a supervised model's on its training
batches.

The EMA teacher inherits its BatchNorm running statistics from the student: an average of
the student's running statistics, themselves a short average of batch statistics under
weights that kept changing, not the statistics of the teacher's own averaged weights
(Wu and Johnson's point about EMA models). The hook recomputes them with the final weights,
by default on the distribution the student's statistics follow in training: one batch of
each branch that updates them in turn (``'sup'`` and ``'unsup_student'`` for the 3D
recipes, ``'sup'`` for 2D's default ``strong_bn_stats=False``).

Measured on the 3D demo (``docs/benchmarks.md``, ``benchmarks/precise_bn_3d.py``): on that
mixture the default's final teachers move by +0.006 / +0.001 / +0.007 3D AP, the
supervised models by -0.002 / -0.000 / -0.002, and three other recipes' teachers by -0.007
to +0.006: the statistics the EMA carries are close to the final weights' own. On the strong
views alone (``branch='unsup_student'``) the same teachers move by -0.024 to +0.024, a
change of distribution rather than of precision. The hook is off by default.

:func:`estimate_bn_stats` is PreciseBN (Wu and Johnson, "Rethinking 'Batch' in BatchNorm",
2021; pycls' ``compute_precise_bn_stats``): each BatchNorm layer's running mean and
variance become the plain average of its batch statistics over the given batches (momentum
``None``), in training mode for the BatchNorm layers alone, without gradients.
"""
from functools import partial
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader, Subset

from ssl_det.registry import HOOKS
from .random_state_hook import get_random_state, set_random_state

_BN = nn.modules.batchnorm._BatchNorm


def named_bn_layers(module: nn.Module) -> List[Tuple[str, _BN]]:
    """(name, layer) of ``module``'s BatchNorm layers that keep running statistics."""
    return [(name, m) for name, m in module.named_modules()
            if isinstance(m, _BN) and m.track_running_stats]


def bn_layers(module: nn.Module) -> List[_BN]:
    return [m for _, m in named_bn_layers(module)]


def frozen_bn_names(module: nn.Module) -> Set[str]:
    """Names of ``module``'s BatchNorm layers that a module in training mode keeps in eval
    mode (mmdet's ``norm_eval``, frozen stages): their statistics are not to be learned.
    Empty if ``module`` is not in training mode (nothing to tell)."""
    if not module.training:
        return set()
    return {name for name, m in named_bn_layers(module) if not m.training}


@torch.no_grad()
def estimate_bn_stats(module: nn.Module, batches: Iterable, forward: Callable,
                      skip: Iterable[str] = ()) -> int:
    """Replace the running mean and variance of every BatchNorm layer of ``module`` by the
    average of its batch statistics over ``batches`` (``forward(batch)`` runs ``module`` on
    one); the layers named in ``skip`` keep theirs and normalise as in eval mode. The
    module's training flags and the layers' momentum are restored. Returns the number of
    batches; with none, the statistics are left as they were."""
    skip = set(skip)
    layers = [m for name, m in named_bn_layers(module) if name not in skip]
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
              m.momentum) for m in layers]
    modes = {m: m.training for m in module.modules()}
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    count = 0
    try:
        module.eval()
        for m in layers:
            m.train()
        for batch in batches:
            forward(batch)
            count += 1
    finally:
        for m, training in modes.items():
            m.train(training)
        for m, mean, var, tracked, momentum in saved:
            m.momentum = momentum
            if count == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(tracked)
    return count


@HOOKS.register_module()
class PreciseBNHook(Hook):
    """Before the model is validated (and at the last iteration, before it is saved),
    re-estimate the teacher's BatchNorm statistics on ``num_samples`` views of each of
    ``branch`` (see the module doc). A model without a teacher (a supervised detector) has
    its own statistics re-estimated on its training batches, so that both sides of a
    comparison can be treated alike.

    The views come from the training data set that fills each branch, in batches of as many
    samples as the training batch holds of that source, through the same pipeline and data
    preprocessor as in training. With several branches, one batch of each is forwarded in
    turn, as the training step runs the student once on each (so each branch weighs as
    much as in the student's running statistics); a ``joint_batch`` model (one student pass
    over the labeled and strong scenes) gets one batch of each concatenated into one
    forward pass, as its training step normalises them together. The samples are a fixed random
    subset (``seed``); a data set smaller than that is cycled, each pass through the
    pipeline's own random augmentation. The global random states are restored
    afterwards, so training draws what it would have drawn. In a distributed run each rank
    estimates on its share of the subset and the statistics are averaged over the ranks.
    After a validation in the middle of training the teacher's statistics drift back
    towards the student's with the EMA.

    Args:
        num_samples (int): views to estimate from: each branch gives as many batches as
            ``num_samples`` views of the branch with the largest batch fill (rounded up to
            whole batches). Default: 512.
        branch (str | Sequence[str], optional): the data branch(es) of the views. Default:
            those whose batches update the student's running statistics in training
            (:meth:`branches`). Ignored for a model without a teacher.
        batch_size (int, optional): views a batch; default the training batch's share of
            each source (``MultiSourceSampler``), else the training batch size.
        student (bool): also re-estimate the student's (it goes on training from them).
            Default: False.
        seed (int): seed of the subset. Default: 0.
    """
    priority = 'LOW'  # after MeanTeacherHook's EMA update (NORMAL), before the checkpoint

    def __init__(self, num_samples: int = 512,
                 branch: Union[str, Sequence[str], None] = None,
                 batch_size: Optional[int] = None, student: bool = False,
                 seed: int = 0) -> None:
        if num_samples < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(f'num_samples and batch_size must be >= 1, got {num_samples}, '
                             f'{batch_size}')
        branches = None if branch is None else (
            (branch, ) if isinstance(branch, str) else tuple(branch))
        if branches is not None and (not branches or len(set(branches)) < len(branches)
                                     or not all(isinstance(b, str) for b in branches)):
            raise ValueError(f'branch must be a branch name or distinct names, got {branch!r}')
        self.num_samples = int(num_samples)
        self.branch = branches
        self.batch_size = batch_size
        self.student = bool(student)
        self.seed = int(seed)

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _has_teacher(self, runner) -> bool:
        return isinstance(getattr(self._model(runner), 'teacher', None), nn.Module)

    def branches(self, runner) -> Tuple[str, ...]:
        """``branch``, or by default the branches whose batches update the student's running
        statistics in training: ``'sup'`` unless the model's ``labeled_bn_stats`` is False,
        ``'unsup_student'`` if its ``strong_bn_stats`` is True."""
        if self.branch is not None:
            return self.branch
        model = self._model(runner)
        flags = (('sup', getattr(model, 'labeled_bn_stats', True)),
                 ('unsup_student', getattr(model, 'strong_bn_stats', False)))
        return tuple(branch for branch, updates in flags if updates)

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if not self._has_teacher(runner):
            if self.student:
                raise ValueError(f'PreciseBNHook(student=True) needs a teacher-student model; '
                                 f'{type(model).__name__} has no teacher')
            return
        for branch in self.branches(runner):
            self.source(runner, branch)  # fails now, not at the end of training

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.validates_after(runner):
            self.update(runner)

    @staticmethod
    def validates_after(runner) -> bool:
        """Whether the train loop validates after this iteration, or it is the last."""
        done = runner.iter + 1
        if done >= runner.max_iters:
            return True
        loop = runner.train_loop
        interval = getattr(loop, 'val_interval', None)
        if not interval or getattr(runner, '_val_loop', None) is None:
            return False
        return done >= getattr(loop, 'val_begin', 1) and done % interval == 0

    def source(self, runner, branch: Optional[str] = None):
        """(index, data set) of the training source whose samples fill ``branch`` (default
        the first of :meth:`branches`)."""
        branch = branch or self.branches(runner)[0]
        dataset = runner.train_dataloader.dataset
        sources = getattr(dataset, 'datasets', [dataset])
        for index, source in enumerate(sources):
            if len(source) and self._fills_branch(source[0], branch):
                return index, source
        raise ValueError(f'PreciseBNHook: no training data set fills the {branch!r} '
                         'branch (a MultiBranch pipeline with it)')

    @staticmethod
    def _fills_branch(sample, branch: str) -> bool:
        inputs = sample.get('inputs') if isinstance(sample, dict) else None
        return isinstance(inputs, dict) and inputs.get(branch) is not None

    def _subset(self, runner, dataset, size: int) -> Subset:
        """``size`` samples of a fixed random order of ``dataset`` (cycled if it is smaller),
        this rank's share of them."""
        world, rank = get_world_size(), runner.rank
        order = np.random.default_rng(self.seed).permutation(len(dataset))
        return Subset(dataset, np.resize(order, size)[rank::world].tolist())

    def _batch_size(self, runner, index: int) -> int:
        if self.batch_size is not None:
            return self.batch_size
        train = runner.train_dataloader
        # the sampler that splits the batch by source (MultiSourceSampler), wrapped or not
        batch_sampler = train.batch_sampler
        samplers = (train.sampler, getattr(batch_sampler, 'sampler', None), batch_sampler)
        per_source = next((getattr(x, 'num_per_source') for x in samplers
                           if getattr(x, 'num_per_source', None)), None)
        return per_source[index] if per_source else (
            train.batch_size or getattr(batch_sampler, 'batch_size', None) or 1)

    def loaders(self, runner) -> List[tuple]:
        """(branch, loader) for each branch: its views batched as the training batch holds
        them, the same number of batches for each (``num_samples`` views of the branch with
        the largest batch)."""
        sources = [(branch, *self.source(runner, branch)) for branch in self.branches(runner)]
        sizes = [self._batch_size(runner, index) for _, index, _ in sources]
        num_batches = -(-self.num_samples // max(sizes))
        return [(branch, DataLoader(self._subset(runner, dataset, num_batches * size),
                                    batch_size=size, shuffle=False, num_workers=0,
                                    collate_fn=partial(self.collate, branch=branch)))
                for (branch, _, dataset), size in zip(sources, sizes)]

    def loader(self, runner, branch: Optional[str] = None) -> DataLoader:
        """The views of ``branch`` (default the first of :meth:`branches`), as
        :meth:`loaders` batches them."""
        branch = branch or self.branches(runner)[0]
        return dict(self.loaders(runner))[branch]

    def plain_loader(self, runner) -> DataLoader:
        """A supervised model's training batches: its training data set, batch size and
        collate function, ``num_samples`` samples rounded up to whole batches."""
        train = runner.train_dataloader
        size = self._batch_size(runner, 0)
        total = -(-self.num_samples // size) * size
        return DataLoader(self._subset(runner, train.dataset, total), batch_size=size,
                          shuffle=False, num_workers=0, collate_fn=train.collate_fn)

    @staticmethod
    def collate(samples: list, branch: str) -> dict:
        """The branch's samples as a training batch holds them: ``inputs`` and
        ``data_samples`` each a dict of the branch's list (the form
        ``MultiBranchDataPreprocessor`` groups in training)."""
        return {key: {branch: [s[key][branch] for s in samples]} for key in samples[0]}

    def joint(self, runner) -> bool:
        """Whether the branches are forwarded together: a ``joint_batch`` model's student
        normalises its labeled and strong scenes in one pass (several branches only)."""
        return (self._has_teacher(runner) and len(self.branches(runner)) > 1
                and bool(getattr(self._model(runner), 'joint_batch', False)))

    def batches(self, runner) -> Iterator:
        """(branch, batch) pairs, one batch of each branch in turn (``None`` for a
        supervised model's batches); for a :meth:`joint` model one pair a step, the tuple
        of branches with one batch of each."""
        if not self._has_teacher(runner):
            for batch in self.plain_loader(runner):
                yield None, batch
            return
        loaders = self.loaders(runner)
        joint = self.joint(runner)
        for batches in zip(*(loader for _, loader in loaders)):
            if joint:
                yield tuple(branch for branch, _ in loaders), {
                    key: {b: batch[key][b] for (b, _), batch in zip(loaders, batches)}
                    for key in batches[0]}
                continue
            for (branch, _), batch in zip(loaders, batches):
                yield branch, batch

    @staticmethod
    def concat_branches(data: dict, branches: Sequence[str]) -> Tuple[dict, list]:
        """The preprocessed branches' inputs (each field's lists joined) and data samples
        as one batch, in the order of ``branches`` (``PillarDetector.loss_parts``' order)."""
        first = data['inputs'][branches[0]]
        inputs = {key: [x for b in branches for x in data['inputs'][b][key]] for key in first}
        samples = [s for b in branches for s in data['data_samples'][b]]
        return inputs, samples

    def update(self, runner) -> None:
        model = self._model(runner)
        if self._has_teacher(runner):
            targets = [('teacher', model.teacher)]
            if self.student:
                targets.append(('student', model.student))
            what = ' and '.join(repr(b) for b in self.branches(runner)) + ' views'
            if self.joint(runner):
                what += ' (one batch of each a pass, as joint_batch trains)'
        else:
            targets, what = [('model', model)], 'training'

        def forward(detector):
            def run(item):
                branch, batch = item
                # as the training step groups and prepares the branches
                data = model.data_preprocessor(batch, True)
                if branch is None:
                    detector._forward(data['inputs'], data['data_samples'])
                elif isinstance(branch, tuple):
                    detector._forward(*self.concat_branches(data, branch))
                else:
                    detector._forward(data['inputs'][branch], data['data_samples'][branch])
            return run

        # layers the training keeps frozen (norm_eval): the student's, or the model's own
        frozen = frozen_bn_names(getattr(model, 'student', model))
        for name, detector in targets:
            # the pipeline draws random augmentations: leave training's streams as they were
            states = get_random_state()
            try:
                count = estimate_bn_stats(detector, self.batches(runner), forward(detector),
                                          skip=frozen)
            finally:
                set_random_state(states)
            layers = [m for n, m in named_bn_layers(detector) if n not in frozen]
            if get_world_size() > 1:
                for m in layers:
                    for buf in (m.running_mean, m.running_var):
                        all_reduce(buf, op='mean')
            print_log(f'PreciseBNHook: the {name}\'s {len(layers)} BatchNorm layers '
                      f're-estimated on {count} batches of {what}'
                      + (f' ({len(frozen)} frozen ones kept)' if frozen else ''),
                      logger='current')
