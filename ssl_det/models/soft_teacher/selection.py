"""Which teacher detections train which part of the student (Soft Teacher's selection).

Detections below ``initial_thr`` train nothing. Of the rest:

- ``cls``: the pseudo-label policy's confident detections train the RoI classifier (and the
  mask head);
- ``rpn``: detections scoring at least ``rpn_thr`` train the RPN;
- ``reg``: detections whose box-jitter uncertainty is below ``reg_thr`` train the RoI box
  regression, whatever their score (a well-localised box can be unsure of its class).

What the policy keeps but ``initial_thr`` does not let train is ignored, neither foreground
nor background: its ambiguous band wherever the policy puts it (below ``initial_thr`` too),
and a confident detection below ``initial_thr``. Ignoring trains nothing; cutting them at
``initial_thr`` would teach them as background (the band's lower part while the log counted
it ignored).
"""
from typing import NamedTuple

from torch import Tensor

from ssl_det.models.pseudo_labels.base import PseudoLabelSplit


class SoftTeacherSelection(NamedTuple):
    """(N,) bool masks over a batch's teacher detections."""

    cls: Tensor
    ignored: Tensor
    rpn: Tensor
    reg: Tensor
    candidate: Tensor

    @property
    def used(self) -> Tensor:
        """Detections that train anything (or are ignored): the ones to project."""
        return self.cls | self.ignored | self.rpn | self.reg


def select_pseudo_labels(scores: Tensor, split: PseudoLabelSplit, uncertainty: Tensor,
                         initial_thr: float, rpn_thr: float,
                         reg_thr: float) -> SoftTeacherSelection:
    """Sort teacher detections into Soft Teacher's pseudo-label sets.

    Args:
        scores (Tensor): (N,) teacher scores.
        split (PseudoLabelSplit): the policy's split of the same detections.
        uncertainty (Tensor): (N,) box-jitter uncertainty; only read where
            ``scores >= initial_thr`` (elsewhere it may be anything, e.g. inf).
        initial_thr (float): detections below it train nothing (what the policy keeps
            below it is ignored).
        rpn_thr (float): score needed to train the RPN.
        reg_thr (float): uncertainty below which a box trains the box regression.
    """
    candidate = scores >= initial_thr
    return SoftTeacherSelection(
        cls=split.confident & candidate,
        ignored=split.ignored | (split.confident & ~candidate),
        rpn=candidate & (scores >= rpn_thr),
        reg=candidate & (uncertainty < reg_thr),
        candidate=candidate)
