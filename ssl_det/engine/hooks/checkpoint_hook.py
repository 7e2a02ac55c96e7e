"""mmengine's CheckpointHook, reordered so that a kill at any moment leaves a checkpoint."""
import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

from ssl_det.registry import HOOKS


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) that never leaves a run without a
    complete checkpoint.

    mmengine removes the oldest kept checkpoint *before* writing the new one, so with
    ``max_keep_ckpts=1`` a run killed during the save has none left, and it writes
    ``last_checkpoint`` in place. Here the new checkpoint is written first (atomically, by
    ssl_det's local file backend: temporary file, then rename), ``last_checkpoint`` is
    replaced atomically to name it, and only then are checkpoints beyond ``max_keep_ckpts``
    removed. With ``default_scope='ssl_det'`` the configs' ``type='CheckpointHook'`` builds
    this hook. Temporary files a killed save left behind are removed when training starts.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for folder in {self.out_dir, runner.work_dir}:
                if '://' in str(folder):
                    continue
                for path in glob.glob(osp.join(str(folder), '.*.tmp')):
                    os.remove(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args,
            save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if is_main_process():
            self.file_backend.put_text(self.last_ckpt,
                                       osp.join(runner.work_dir, 'last_checkpoint'))
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            self.keep_ckpt_ids.append(step)
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                old = self.keep_ckpt_ids.popleft()
                path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
                if is_main_process() and old != step:
                    if self.file_backend.isfile(path):
                        self.file_backend.remove(path)
                    elif self.file_backend.isdir(path):  # deepspeed's checkpoints
                        self.file_backend.rmtree(path)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
