"""Notice a teacher that gives no confident pseudo box, iteration after iteration.

A teacher trained from scratch (or for too short a burn-in) scores every object below
mmdet's 0.9: no pseudo box passes, the unlabeled loss is switched off (it would only teach
"background everywhere") and semi-supervised training silently degenerates into supervised
training. This watch counts such iterations and says so in the log, with the fixes.
"""
import logging

from mmengine.logging import print_log
from torch import Tensor


class StarvingWatch:
    """Count consecutive unlabeled iterations without a confident pseudo box.

    Args:
        patience (int): warn when the streak reaches this many iterations (and again each
            time it doubles); 0 never warns. Default: 50.
    """

    def __init__(self, patience: int = 50) -> None:
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f'starving_iters must be an int >= 0, got {patience!r}.')
        self.patience = patience
        self.streak = 0
        self.best_score = 0.0
        self._next_warning = patience

    def update(self, num_pseudo: int, scores: Tensor, policy) -> int:
        """Record one unlabeled iteration; return the current streak.

        Args:
            num_pseudo (int): confident pseudo boxes of this batch (after projection).
            scores (Tensor): every teacher detection's score of this batch.
            policy: the pseudo-label policy (for its thresholds in the message).
        """
        if num_pseudo > 0:
            if self.patience and self.streak >= self.patience:
                print_log(f'TeacherStudent: the teacher gives confident pseudo boxes again '
                          f'({num_pseudo} in this batch) after {self.streak} iterations '
                          'without; the unlabeled loss is back on.', logger='current')
            self.streak, self.best_score, self._next_warning = 0, 0.0, self.patience
            return 0
        self.streak += 1
        if scores.numel():
            self.best_score = max(self.best_score, float(scores.max()))
        if self.patience and self.streak == self._next_warning:
            self._next_warning *= 2
            high = [round(v, 3) for v in policy.thresholds()['high'].tolist()]
            print_log(
                f'TeacherStudent: starving teacher: no confident pseudo box for {self.streak} '
                f'iterations (best teacher score {self.best_score:.3f}, high thresholds '
                f'{high}), so the unlabeled loss is off and training is supervised only. '
                'Fixes: lower the thresholds (FixedThreshold.score_thr / DualThreshold.high), '
                "or let them follow the teacher's scores (pseudo_label=dict(type="
                "'DynamicThreshold', num_classes=...)), or train the teacher longer first "
                '(MeanTeacherHook burn_in_iters, or load_from a supervised checkpoint).',
                logger='current', level=logging.WARNING)
        return self.streak
