"""Re-estimate the teacher's BatchNorm statistics on the strong unlabeled views (PreciseBN).

The EMA teacher inherits its BatchNorm running statistics from the student, whose running
statistics follow every batch it trains on: the labeled batch and the strong unlabeled
batch in turn, each normalised by its own statistics in training. At test time one set of
statistics normalises every scene. On the 3D demo, the default's final teachers of three
seeds normalised the validation scenes better with statistics of the strong views alone than
with the blend (+0.004 / +0.011 / +0.017 3D AP with this hook; ``docs/benchmarks.md``), while
statistics of the raw scenes, or of a supervised model, were worse. Letting only the strong
batches update the running statistics during training
(``TeacherStudent3D(labeled_bn_stats=False)``) cost 0.068 on one seed: the teacher that
labels the scenes starts from weights that never saw strong statistics. So the hook
re-estimates them once the weights are trained, before the model is validated and saved.
It is off by default: on other recipes' teachers the same re-estimate moved 3D AP by -0.024
to +0.024 a seed, so it is not a gain to rely on; measure it with
``benchmarks/precise_bn_3d.py`` on saved runs.

:func:`estimate_bn_stats` is PreciseBN (Wu and Johnson, "Rethinking 'Batch' in BatchNorm",
2021; pycls' ``compute_precise_bn_stats``): each BatchNorm layer's running mean and
variance become the plain average of its batch statistics over the given batches (momentum
``None``), in training mode for the BatchNorm layers alone, without gradients.
"""
from typing import Callable, Iterable, List, Optional

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


def bn_layers(module: nn.Module) -> List[_BN]:
    return [m for m in module.modules() if isinstance(m, _BN) and m.track_running_stats]


@torch.no_grad()
def estimate_bn_stats(module: nn.Module, batches: Iterable, forward: Callable) -> int:
    """Replace the running mean and variance of every BatchNorm layer of ``module`` by the
    average of its batch statistics over ``batches`` (``forward(batch)`` runs ``module`` on
    one). The module's training flags and the layers' momentum are restored. Returns the
    number of batches; with none, the statistics are left as they were."""
    layers = bn_layers(module)
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
    re-estimate the teacher's BatchNorm statistics on ``num_samples`` strong unlabeled views
    (see the module doc).

    The views come from the training data set that fills ``branch`` (the unlabeled one), in
    batches of as many samples as the training batch holds of that source, through the
    same pipeline and data preprocessor as in training. The samples are a
    fixed random subset (``seed``); the global random states are restored afterwards, so
    training draws what it would have drawn. In a distributed run each rank estimates on
    its share of the subset and the statistics are averaged over the ranks. After a
    validation in the middle of training the teacher's statistics drift back towards the
    student's with the EMA.

    Args:
        num_samples (int): views to estimate from (fewer if the data set is smaller).
            Default: 512.
        branch (str): the data branch of the views. Default: ``'unsup_student'``.
        batch_size (int, optional): views a batch; default the training batch's share of
            the data set (``MultiSourceSampler``), else the training batch size.
        student (bool): also re-estimate the student's (it goes on training from them).
            Default: False.
        seed (int): seed of the subset. Default: 0.
    """
    priority = 'LOW'  # after MeanTeacherHook's EMA update (NORMAL), before the checkpoint

    def __init__(self, num_samples: int = 512, branch: str = 'unsup_student',
                 batch_size: Optional[int] = None, student: bool = False,
                 seed: int = 0) -> None:
        if num_samples < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(f'num_samples and batch_size must be >= 1, got {num_samples}, '
                             f'{batch_size}')
        self.num_samples = int(num_samples)
        self.branch = branch
        self.batch_size = batch_size
        self.student = bool(student)
        self.seed = int(seed)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not isinstance(getattr(model, 'teacher', None), nn.Module):
            raise TypeError(f'PreciseBNHook re-estimates a teacher-student model\'s teacher; '
                            f'{type(model).__name__} has none')
        self.source(runner)  # fails now, not at the end of training, without the views

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

    def source(self, runner):
        """(index, data set) of the training source whose samples fill ``branch``."""
        dataset = runner.train_dataloader.dataset
        sources = getattr(dataset, 'datasets', [dataset])
        for index, source in enumerate(sources):
            if len(source) and self._fills_branch(source[0]):
                return index, source
        raise ValueError(f'PreciseBNHook: no training data set fills the {self.branch!r} '
                         'branch (a MultiBranch pipeline with it)')

    def _fills_branch(self, sample) -> bool:
        inputs = sample.get('inputs') if isinstance(sample, dict) else None
        return isinstance(inputs, dict) and inputs.get(self.branch) is not None

    def loader(self, runner) -> DataLoader:
        index, dataset = self.source(runner)
        train = runner.train_dataloader
        batch_size = self.batch_size
        if batch_size is None:
            # the sampler that splits the batch by source (MultiSourceSampler), wrapped or not
            batch_sampler = train.batch_sampler
            samplers = (train.sampler, getattr(batch_sampler, 'sampler', None), batch_sampler)
            per_source = next((getattr(x, 'num_per_source') for x in samplers
                               if getattr(x, 'num_per_source', None)), None)
            batch_size = per_source[index] if per_source else (
                train.batch_size or getattr(batch_sampler, 'batch_size', None) or 1)
        world, rank = get_world_size(), runner.rank
        order = np.random.default_rng(self.seed).permutation(len(dataset))
        chosen = order[:min(self.num_samples, len(dataset))][rank::world]
        return DataLoader(Subset(dataset, chosen.tolist()), batch_size=batch_size,
                          shuffle=False, collate_fn=self.collate, num_workers=0)

    def collate(self, samples: list) -> dict:
        """The branch's samples as a training batch holds them: ``inputs`` and
        ``data_samples`` each a dict of the branch's list (the form
        ``MultiBranchDataPreprocessor`` groups in training)."""
        return {key: {self.branch: [s[key][self.branch] for s in samples]}
                for key in samples[0]}

    def update(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        targets = [('teacher', model.teacher)]
        if self.student:
            targets.append(('student', model.student))
        branch = self.branch

        def forward(detector):
            def run(batch):
                # as the training step groups and prepares the branches
                data = model.data_preprocessor(batch, True)
                detector._forward(data['inputs'][branch], data['data_samples'][branch])
            return run

        for name, detector in targets:
            # the pipeline draws random augmentations: leave training's streams as they were
            states = get_random_state()
            try:
                count = estimate_bn_stats(detector, self.loader(runner), forward(detector))
            finally:
                set_random_state(states)
            layers = bn_layers(detector)
            if get_world_size() > 1:
                for m in layers:
                    for buf in (m.running_mean, m.running_var):
                        all_reduce(buf, op='mean')
            print_log(f'PreciseBNHook: the {name}\'s {len(layers)} BatchNorm layers '
                      f're-estimated on {count} batches of {branch!r} views', logger='current')
