"""Training hooks: the teacher's EMA, pseudo-label logging/visualisation, data and
checkpoint safety."""
from .checkpoint_hook import CheckpointHook
from .data_check_hook import DataCheckHook
from .mean_teacher_hook import MeanTeacherHook
from .non_finite_guard_hook import NonFiniteGuardHook
from .precise_bn_hook import PreciseBNHook
from .pseudo_label_vis_hook import PseudoLabelVisHook
from .random_state_hook import RandomStateHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['CheckpointHook', 'DataCheckHook', 'MeanTeacherHook', 'NonFiniteGuardHook',
           'PreciseBNHook', 'PseudoLabelVisHook', 'RandomStateHook', 'SafeCheckpointHook']
