"""Test-only hook for the multi-process tests: each rank saves its model's teacher and student.

A config loads it with ``custom_imports=dict(imports=['multi_node_helpers'])`` (``tests/`` on
``PYTHONPATH``) and appends ``dict(type='TeacherDumpHook')`` to its ``custom_hooks``.
"""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ssl_det.registry import HOOKS


@HOOKS.register_module(force=True)
class TeacherDumpHook(Hook):
    """After training, write ``{work_dir}/teacher_rank{rank}.pt`` and
    ``{work_dir}/student_rank{rank}.pt`` (state dicts, on every rank)."""

    priority = 'LOWEST'

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank = get_rank()
        for name in ('teacher', 'student'):
            state = {k: v.detach().cpu().clone()
                     for k, v in getattr(model, name).state_dict().items()}
            torch.save(state, osp.join(runner.work_dir, f'{name}_rank{rank}.pt'))
