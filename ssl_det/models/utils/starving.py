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


class SparseTeacherWatch:
    """Notice a teacher whose confident pseudo boxes per unlabeled image stay far below the
    labeled images' ground-truth boxes per image.

    The unlabeled images hold about as many objects as the labeled ones; a teacher that
    keeps a handful of them (mmdet's 0.9 threshold on a teacher that seldom scores so high)
    teaches the rest as background, and the student learns to miss them. Both counts are
    decayed sums (``momentum`` per iteration), so the ratio follows the run.

    Args:
        ratio (float): warn when confident pseudo boxes per unlabeled image fall below this
            fraction of the labeled boxes per image; 0 never warns. Default: 0.25.
        patience (int): unlabeled iterations before the first look, and between warnings
            (doubling each time while the teacher stays sparse). Default: 50.
        momentum (float): decay of both sums per update. Default: 0.98.
    """

    def __init__(self, ratio: float = 0.25, patience: int = 50, momentum: float = 0.98) -> None:
        if not 0 <= ratio < 1:
            raise ValueError(f'sparse_ratio must lie in [0, 1), got {ratio!r}.')
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f'sparse patience must be an int >= 1, got {patience!r}.')
        self.ratio, self.patience, self.momentum = ratio, patience, momentum
        self.labeled = [0.0, 0.0]  # decayed boxes, images
        self.pseudo = [0.0, 0.0]
        self.seen = 0
        self._next_warning = patience
        self.warnings = 0

    @staticmethod
    def _add(sums, boxes, images, momentum):
        sums[0] = sums[0] * momentum + boxes
        sums[1] = sums[1] * momentum + images

    def update_labeled(self, num_boxes: int, num_images: int) -> None:
        """Record one labeled batch: its ground-truth boxes and images."""
        if num_images:
            self._add(self.labeled, float(num_boxes), float(num_images), self.momentum)

    def per_image(self):
        """(confident pseudo boxes per unlabeled image, labeled boxes per image) so far."""
        pseudo = self.pseudo[0] / self.pseudo[1] if self.pseudo[1] else float('nan')
        labeled = self.labeled[0] / self.labeled[1] if self.labeled[1] else float('nan')
        return pseudo, labeled

    def update(self, num_pseudo: int, num_images: int, policy, warn: bool = True) -> float:
        """Record one unlabeled batch; return the ratio of the two per-image counts (NaN
        before a labeled box was seen). ``warn=False`` holds the warning back (while
        ``StarvingWatch`` already says the teacher gives nothing)."""
        self._add(self.pseudo, float(num_pseudo), float(num_images), self.momentum)
        self.seen += 1
        pseudo, labeled = self.per_image()
        if not labeled > 0:
            return float('nan')
        ratio = pseudo / labeled
        if ratio >= self.ratio:
            self._next_warning = max(self._next_warning, self.seen + self.patience)
            return ratio
        if warn and self.ratio and self.seen >= self._next_warning:
            self.warnings += 1
            self._next_warning = self.seen + self.patience * 2 ** self.warnings
            high = [round(v, 3) for v in policy.thresholds()['high'].tolist()]
            print_log(
                f'TeacherStudent: sparse teacher: {pseudo:.2f} confident pseudo boxes per '
                f'unlabeled image against {labeled:.2f} ground-truth boxes per labeled image '
                f'(high thresholds {high}). Most objects of the unlabeled images are taught as '
                'background, which trains the student to miss them. Fixes: lower the '
                "thresholds, or let them follow the teacher's scores (pseudo_label=dict("
                "type='DynamicThreshold', num_classes=...)), or give the ambiguous band an "
                'ignore (DualThreshold low) instead of background; Soft Teacher: '
                'soft_background=True.', logger='current', level=logging.WARNING)
        return ratio
