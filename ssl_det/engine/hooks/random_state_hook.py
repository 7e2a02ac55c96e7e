"""Save the main process's random states in checkpoints and restore them on resume."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from ssl_det.registry import HOOKS


def get_random_state() -> dict:
    """``random``, ``numpy`` and ``torch`` (CPU) generator states as tensors and plain
    values, so that the checkpoint still loads with ``torch.load(weights_only=True)``."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(python=dict(version=version, state=torch.tensor(mt, dtype=torch.int64),
                            gauss=gauss),
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)),
                           pos=int(pos), has_gauss=int(has_gauss), cached=float(cached)),
                torch=torch.get_rng_state())


def set_random_state(state: dict) -> None:
    """Inverse of :func:`get_random_state`."""
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['state'].tolist()), py['gauss']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached']))
    torch.set_rng_state(state['torch'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Carry the main process's random states across a resume.

    mmengine re-seeds the global generators when it resumes, so the model's own randomness
    (Soft Teacher's box jitter, dropout, random proposals) would restart from the seed
    instead of continuing. This hook stores the states in every checkpoint
    (``rng_state``) and, when a run *resumes* (not for ``load_from``), hands them to
    ssl_det's ``IterBasedTrainLoop``, which restores them right before the first resumed
    iteration (after its fast-forward, which draws no random numbers). tools/train.py adds
    it to every run.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self.pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = get_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False) and 'rng_state' in checkpoint:
            self.pending = checkpoint['rng_state']

    def restore(self) -> bool:
        """Restore the resumed states (once); whether there were any."""
        if self.pending is None:
            return False
        set_random_state(self.pending)
        self.pending = None
        return True
