"""An iteration-based training loop that resumes by index, not by loading data again."""
import copy
import logging
from typing import Dict, Union

from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop as MMEngineIterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader

from ssl_det.datasets.resumable import ResumableBatchSampler
from ssl_det.engine.hooks.random_state_hook import RandomStateHook
from ssl_det.registry import LOOPS


@LOOPS.register_module()
class IterBasedTrainLoop(MMEngineIterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` (same arguments) with an exact, cheap resume.

    With ``default_scope='ssl_det'`` a config's ``type='IterBasedTrainLoop'`` builds this
    loop. When the train dataloader comes as a config it wraps, whatever the config names:

    * the batch sampler in :class:`~ssl_det.datasets.resumable.ResumableBatchSampler`
      (the config's ``batch_sampler``, or batches of its ``sampler`` in order), and
    * the dataset in :class:`~ssl_det.datasets.resumable.SeededDataset`,

    so that every sample's augmentation is seeded by its draw. A run resumed at iteration
    ``k`` then fast-forwards the samplers ``k`` batches by index (mmengine loads and decodes
    all ``k`` batches again), restores the random states saved by ``RandomStateHook``, and
    continues with the same batches, augmentations and model randomness as the
    uninterrupted run.

    The batch sampler is endless: where an epoch of the sampler (``DefaultSampler``,
    ``MultiSourceSampler``) ends it moves to the next epoch itself, so the DataLoader and its
    workers never restart (mmengine restarts them with a 2 s pause every epoch).

    Args:
        resumable (bool): Wrap the dataloader as above. False keeps mmengine's behaviour.
            Defaults to True.
        **kwargs: ``IterBasedTrainLoop``'s arguments.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, Dict], *args,
                 resumable: bool = True, **kwargs) -> None:
        if resumable and isinstance(dataloader, dict):
            dataloader = copy.deepcopy(dataloader)
            dataloader['dataset'] = dict(type='ssl_det.SeededDataset',
                                         dataset=dataloader['dataset'])
            dataloader['batch_sampler'] = dict(type='ssl_det.ResumableBatchSampler',
                                               batch_sampler=dataloader.get('batch_sampler'),
                                               seed=runner.seed, endless=True)
        super().__init__(runner, dataloader, *args, **kwargs)

    def run(self):
        """Launch training (resuming by index when ``iter > 0``)."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            self._fast_forward()
        for hook in self.runner.hooks:
            if isinstance(hook, RandomStateHook):
                hook.restore()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def _fast_forward(self) -> None:
        batch_sampler = getattr(self.dataloader, 'batch_sampler', None)
        if not isinstance(batch_sampler, ResumableBatchSampler):
            print_log(f'Advance dataloader {self._iter} steps (loading them) to skip data '
                      'that has already been trained: this loop was given a built '
                      'dataloader or resumable=False', logger='current',
                      level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
            return
        epoch = batch_sampler.fast_forward(self._iter)
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        self.dataloader_iterator._epoch = epoch
        print_log(f'resumed the data at iteration {self._iter} (epoch {epoch} of the '
                  'sampler) by index: no batch was loaded to skip', logger='current')
