"""``TeacherStudent3D``: teacher–student training for point-cloud detectors, with HSSDA's
hierarchical pseudo labels and shuffle augmentation.

The 2D design carried to point clouds: batches hold labeled scenes (``sup``) and two views of
each unlabeled scene, weak for the teacher (``unsup_teacher``) and strong for the student
(``unsup_student``), made by mmdet's ``MultiBranch``. The teacher (EMA of the student via
``MeanTeacherHook``, eval mode) predicts on the weak view; a pseudo-label policy's per-class
thresholds sort its boxes into three tiers (HSSDA):

- **high** (``score >= high``): pseudo ground truth;
- **middle** (``low <= score < high``): ``middle='weight'`` supervises them with the
  teacher's score (to the power ``middle_power``) as the instance weight (the heatmap loss
  around the box and its box-code loss are scaled by it); ``middle='ignore'`` leaves their
  region out of the heatmap loss; a list gives each class its own mode;
- **low** (``low_score_thr <= score < low``, not overlapping a high or middle box):
  ``low='remove_points'`` deletes the points inside them from the student's input, so an
  object the teacher barely saw is not learned as background; ``low='ignore'`` ignores their
  region instead.

Each tier can be switched off (``middle='off'`` drops middle boxes, ``low='off'`` does
nothing with low ones: neither counted nor drawn). Boxes are mapped from the weak to the
strong view exactly through the views' ``lidar_aug_matrix`` and then through the strong
view's patch shuffle (``bev_shuffle``, :class:`~ssl_det.datasets.transforms.BEVPatchShuffle`):
a box cut by a patch border is ignored (its pieces' regions), never split. With the shuffle's
``mode='unshuffle_features'`` the boxes stay in the unshuffled frame instead and the
student's detector moves its BEV features back after the backbone (HSSDA's code).

With ``teacher_views`` the teacher also labels flipped, rotated or scaled copies of each weak
view in the same batched pass; their boxes come back to the weak view through the inverse
map and are fused with the weak view's (:mod:`ssl_det.models.utils.teacher_views`): the tiers
then sort the fused boxes and scores.

With ``dense_weight > 0`` the student also learns the teacher's whole heatmap (dense
distillation): the teacher's heatmap probabilities on each weak view are carried to the
strong view's cells (:meth:`CenterHead3D.warp_heatmap`: the same weak-to-strong map and
shuffle as the boxes) and the student's heatmap on the strong view meets them in a quality
focal loss (``unsup_loss_heatmap_soft``, times ``dense_weight``), beside the tiers' boxes. An
object the teacher scores below every threshold then still teaches a soft peak instead of
background.

With ``object_bank`` the high tier's surest objects (box and points, in their scene's raw
frame) are also kept in a bank (:class:`~ssl_det.models.utils.object_bank.ObjectBank`), and
each labeled scene gets some of them pasted in before the supervised loss (PseudoAugment's
pseudo frames): GT sampling with the teacher's objects, which puts objects of the unlabeled
scenes into the labeled scenes' contexts. The pasted boxes are ground truth for that loss
(flagged ``pasted``; the labeled counts the threshold policy reads leave them out).

With ``labeled_paste`` the *labeled* objects of a GT database (the one the labeled pipeline's
``ObjectSample`` reads) are pasted into each pseudo-labeled strong scene, after the teacher
has labeled it, as ground truth beside the pseudo boxes: GT sampling on the student's whole
input, as HSSDA's student gets it. A pasted box touches (BEV overlap > 0) none of the
teacher's boxes of that scene (every score at or above ``low_score_thr``, and the pieces of a
box the patch shuffle cut), so it is not pasted over an object the teacher saw; the scene's
points under it are replaced by the object's.

With ``patch_mix`` the pseudo-labeled strong scenes of a batch trade their patch shuffle's
patches (the 3D form of mixed pseudo labels): each patch of each mixed scene is filled by
that patch of a random scene of the batch, a permutation of the scenes per patch, so every
scene's every patch lands in exactly one mixed scene. A patch's points, its whole pseudo
boxes (with their weights and other fields) and its ignored pieces go together; no box is
cut, because the shuffle has already ignored every box a patch border cuts. HSSDA's shuffle
recombines the 4 patches of one scene; the mix recombines them across the batch, so an
object is seen in many more contexts.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.models.utils import rename_loss_dict, reweight_loss_dict
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData
from torch import Tensor

from ssl_det.ops import overlaps_bev
from ssl_det.registry import MODELS, TASK_UTILS
from ssl_det.structures import (match_boxes_bev, points_in_boxes, transform_boxes3d,
                                transform_points, weak_to_strong_matrix)
from ssl_det.structures import top_support as top_support_factors
from ssl_det.structures.bev_shuffle import (moves_boxes, patch_index, patch_sources,
                                            shuffle_box_pieces, shuffle_boxes, taken_by,
                                            unshuffle_points)
from ..point_cloud.center_head import best_other_class_score
from ..utils.object_bank import ObjectBank, check_num_paste
from ..utils.teacher_views import (check_view, check_view_iou_thr, fuse_views,
                                    log_views_per_box, view_matrix)
from .teacher_student import TeacherStudent

MIDDLE_MODES = ('weight', 'ignore', 'off')
LOW_MODES = ('remove_points', 'ignore', 'off')
# pseudo_from: the teacher, or diagnostics that use the unlabeled scenes' hidden labels
MIXED_SOURCES = ('teacher_plus_missed', 'teacher_minus_false')
PSEUDO_SOURCES = ('teacher', 'ground_truth') + MIXED_SOURCES
HEADING_MODES = ('full', 'axis')


@MODELS.register_module()
class TeacherStudent3D(TeacherStudent):
    """Teacher–student wrapper of a point-cloud detector (``PillarDetector`` or any detector
    with its ``loss`` / ``predict`` interface on ``dict(points=[...])`` inputs and
    ``gt_instances_3d`` / ``pred_instances_3d`` / ``ignored_instances_3d`` samples).

    Args:
        detector (dict): the detector config (student and teacher are built from it).
        pseudo_label (dict): the threshold policy (``DualThreshold``, ``DynamicThreshold``,
            ``MatchedScoreThreshold``, ...); its ``high`` / ``low`` thresholds bound the
            tiers. An adaptive policy is updated with all the teacher's scores on the weak
            views, or, for ``MatchedScoreThreshold`` (HSSDA's rule), with the scores of the
            teacher's boxes that match ground truth on the batch's labeled scenes.
        unsup_weight (float): weight of the student's loss on the unlabeled views.
        sup_weight (float): weight of the supervised loss.
        middle (str | list[str]): ``'weight'``, ``'ignore'`` or ``'off'`` (see the module
            doc), or one of them a class: HSSDA's code keeps the middle tier off for
            pedestrians, ``['weight', 'off', 'weight']`` on KITTI's classes.
        middle_power (float): with ``middle='weight'``, a middle box's weight is the
            teacher's score to this power (2: sharper, a 0.5 box counts a quarter). Default 1.
        low (str): ``'remove_points'``, ``'ignore'`` or ``'off'``.
        low_score_thr (float): the floor of the low tier.
        predict_on (str): ``'teacher'`` or ``'student'`` for ``predict`` (validation).
        starving_iters (int): warn after this many iterations without a high pseudo box.
        sup_loss_guard (dict, optional): ``SupLossGuard``'s arguments (see
            ``TeacherStudent``); None turns it off. Default: ``dict()`` (its defaults).
        strong_bn_stats (bool): whether the strong scenes update the student's BatchNorm
            running statistics (see ``TeacherStudent``). Default: True. False (2D's default)
            cost 0.048 3D AP on the demo's seed 2 (teacher 0.594 against 0.642;
            ``docs/benchmarks.md``).
        labeled_bn_stats (bool): whether the labeled scenes update the student's BatchNorm
            running statistics while a strong batch is trained beside them. False leaves
            them to the strong scenes (each batch is still normalised by its own statistics
            in training), so the student at test time and the EMA teacher normalise as
            the strong scenes were. Needs ``strong_bn_stats=True`` and ``joint_batch=False``.
            Default: True.
        log_per_class (bool): log per-class tier counts and thresholds.
        teacher_views (list[dict | str]): extra views of each weak scene the teacher labels,
            e.g. ``[dict(flip_y=True)]`` or ``['flip_y']`` (keys ``flip_x``, ``flip_y``,
            ``rot``, ``scale``; see :mod:`~ssl_det.models.utils.teacher_views`). Each costs
            one more scene in the teacher's pass. Default: none.
        view_iou_thr (float): BEV IoU at which the views' boxes of a class fuse.
        joint_batch (bool): one student forward pass over the labeled and the strong scenes
            together, as HSSDA's student sees them, instead of one pass each: BatchNorm
            normalises them with their joint statistics; each batch keeps its own loss and
            weight. Needs a detector with ``loss_parts`` (``PillarDetector``) and
            ``strong_bn_stats=True``. Default: False.
        dense_weight (float): weight of the dense distillation loss (the teacher's heatmap
            as a soft target; see the module doc); 0 turns it off. Needs a head with
            ``warp_heatmap`` (``CenterHead3D``). Default: 0.
        object_bank (dict, optional): ``ObjectBank``'s arguments but ``num_classes``
            (``num_paste`` per class, ``point_cloud_range``, ``min_score``, ...): the high
            tier's objects scoring at least ``min_score`` are banked and pasted into the
            labeled scenes (see the module doc). Default: None (off).
        labeled_paste (dict, optional): ``dict(db_sampler=..., num_paste=[...],
            point_cloud_range=[...])``: the GT database's labeled objects (``db_sampler``, an
            ``ObjectSample`` config) pasted into each pseudo-labeled strong scene,
            ``num_paste`` a class, as weight-1 boxes (see the module doc).
            ``num_paste='fill'`` fills each scene up to the sampler's ``sample_groups``,
            counting its pseudo boxes (high and middle) as present, as ``ObjectSample``
            counts a labeled scene's boxes: no per-data-set counts to set. Not with
            ``dense_weight`` (the teacher's heatmap has no peak at a pasted object).
            Default: None (off).
        unsup_loss_keys (list[str], optional): keep only the strong scenes' losses whose
            name contains one of these (``['loss_heatmap']``: pseudo boxes teach where
            objects are, not their box code); None keeps all. Default: None.
        pseudo_from (str): ``'teacher'``, or ``'ground_truth'`` for a diagnostic: the weak
            views' own labels (an unlabeled file that keeps them) replace the teacher's
            boxes, at score 1, so every one is a high box; everything else is as with the
            teacher. It measures how far the recipe would go with perfect pseudo labels.
            Two more diagnostics mix the labels with the teacher's boxes, to tell which of
            its errors costs the gain: ``'teacher_plus_missed'`` adds, as score-1 high boxes,
            the labeled objects that no high or middle box finds; ``'teacher_minus_false'``
            drops the teacher's boxes (every tier) that find no labeled object. The tiers
            and the policy's update are the teacher's own in both. Default: ``'teacher'``.
        pseudo_match_iou (list[float], optional): for the two mixing diagnostics, the BEV
            IoU, per class, at which a box finds a labeled object of its class (the
            evaluation's loose set, e.g. ``[0.5, 0.25, 0.25]``). Default: None.
        ambiguous_ratio (float, optional): a high or middle box is class-ambiguous when
            another class's heatmap probability at its peak (the head's ``class_scores``)
            reaches this share of its score; it is then ignored (its region is neither an
            object of its class nor background for any class) instead of taught. The
            teacher's false pedestrians and cyclists on the demo scenes are mostly the
            other of the two classes (``docs/benchmarks.md``). Not with ``teacher_views``
            (a fused box's score is the views' average). None: off. Default: None.
        min_yaw_norm (float, optional): a pseudo box whose regressed (sin, cos) is shorter
            than this (the head's ``yaw_norm``: the head averaged two headings) teaches no
            heading: its sin and cos code weights are 0; its heatmap, centre and size stay.
            With ``teacher_views``, a fused box has the ``yaw_norm`` of the box whose heading
            it takes (its top box). None: off. Default: None (the 3D demo's config: 0.5).
        pseudo_heading (str): what a pseudo box's heading teaches. ``'full'``: its
            direction. ``'axis'``: its axis only; the student's heading loss is the smaller
            of the box's heading's and its reverse's (``CenterHead3D.nearer_heading``), so
            a teacher that confuses a car's front and back teaches neither (on the demo
            scenes, three in ten of the stage-1 teachers' car boxes on a car point the
            wrong way, most of them with a long (sin, cos) that ``min_yaw_norm`` keeps).
            Labeled objects pasted into a strong scene keep their direction.
            Default: ``'full'``.
        class_groups (list[list[int]], optional): disjoint groups of class indices that
            the teacher confuses with each other, e.g. ``[[1, 2]]`` for the demo's
            pedestrians and cyclists. A pseudo box of a class in a group teaches that one
            of the group's classes is there, not which (partial labels: the head's
            ``partial_class_targets``): its own class's heatmap learns the group's union
            probability at it, and the group's other classes are not taught as background
            there. Labeled boxes, and labeled objects pasted into strong scenes, keep their
            class. Default: None (every pseudo box teaches its class).
        patch_mix (bool): the strong scenes of a batch trade the patches of their patch
            shuffle after the teacher has labeled them (see the module doc). Needs every
            strong view shuffled (``BEVPatchShuffle``, ``mode='move_boxes'``) on one grid;
            not with ``dense_weight`` or ``labeled_paste``. Default: False.
        top_support (float, optional): the teacher's score of each box is multiplied by
            ``exp(-gap / (top_support * dz))`` before the policy and the tiers see it, where
            ``gap`` is how far below the box's top the highest point of the weak view inside
            it lies (:func:`~ssl_det.structures.top_gaps`; ``dz`` when it holds none) and
            ``dz`` the box's height. A box drawn over a thing shorter than its class (a
            person's box on a knee-high post, whose top the sensor would see) loses score;
            a box fitted to its object's top keeps it. Middle boxes' weights follow the
            new scores; validation scores the teacher as it is. On the demo's validation
            scenes, with 0.5, the teacher's confident pedestrian boxes rank right against
            false at AUROC 0.77 against 0.69 by the score alone, but the trained teacher was
            level with the demo config's over four seeds (``docs/benchmarks.md``).
            None: off. Default: None.
    """

    def __init__(self,
                 detector: dict,
                 pseudo_label: Optional[dict] = None,
                 unsup_weight: float = 1.0,
                 sup_weight: float = 1.0,
                 middle: str = 'weight',
                 middle_power: float = 1.0,
                 low: str = 'remove_points',
                 low_score_thr: float = 0.1,
                 predict_on: str = 'teacher',
                 starving_iters: int = 50,
                 sup_loss_guard: Optional[dict] = dict(),
                 strong_bn_stats: bool = True,
                 labeled_bn_stats: bool = True,
                 log_per_class: bool = True,
                 teacher_views: Sequence = (),
                 view_iou_thr: float = 0.5,
                 joint_batch: bool = False,
                 dense_weight: float = 0.0,
                 object_bank: Optional[dict] = None,
                 labeled_paste: Optional[dict] = None,
                 unsup_loss_keys: Optional[Sequence[str]] = None,
                 pseudo_from: str = 'teacher',
                 pseudo_match_iou: Optional[Sequence[float]] = None,
                 ambiguous_ratio: Optional[float] = None,
                 min_yaw_norm: Optional[float] = None,
                 pseudo_heading: str = 'full',
                 class_groups: Optional[Sequence[Sequence[int]]] = None,
                 patch_mix: bool = False,
                 top_support: Optional[float] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        BaseDetector.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        modes = [middle] if isinstance(middle, str) else list(middle)
        if not modes or any(m not in MIDDLE_MODES for m in modes):
            raise ValueError(f'middle must be one of {MIDDLE_MODES} or a list of them (one a '
                             f'class), got {middle!r}')
        if not middle_power > 0:
            raise ValueError(f'middle_power must be > 0, got {middle_power}')
        if low not in LOW_MODES:
            raise ValueError(f'low must be one of {LOW_MODES}, got {low!r}')
        if predict_on not in ('teacher', 'student'):
            raise ValueError(f"predict_on must be 'teacher' or 'student', got {predict_on!r}")
        self.pseudo_label = TASK_UTILS.build(
            pseudo_label or dict(type='DualThreshold', high=0.5, low=0.3))
        self._build_members(detector)
        self.middle = middle if isinstance(middle, str) else tuple(modes)
        self.low = low
        # the policy's classes, or (a policy without them) the detector head's
        num_classes = (getattr(self.pseudo_label, 'num_classes', None)
                       or getattr(getattr(self.student, 'bbox_head', None), 'num_classes', None))
        if not isinstance(middle, str) and num_classes is not None \
                and len(modes) != num_classes:
            raise ValueError(f'middle has {len(modes)} modes for {num_classes} classes')
        self.middle_power = float(middle_power)
        self.low_score_thr = float(low_score_thr)
        self.unsup_weight, self.sup_weight = float(unsup_weight), float(sup_weight)
        self.unsup_loss_keys = list(unsup_loss_keys) if unsup_loss_keys else None
        self.predict_on = predict_on
        # sparse_ratio 0: the tiers' boxes per frame are not comparable with the labels'
        self._build_watches(starving_iters, 0.0, sup_loss_guard)
        self.log_per_class = log_per_class
        self.unsup_active = True
        self.latest_pseudo: Optional[dict] = None
        self.mixer = None  # 2D Mixup / Mosaic (TeacherStudent's mixing) has no 3D form here
        self.strong_bn_stats = bool(strong_bn_stats)
        self.labeled_bn_stats = bool(labeled_bn_stats)
        if not (self.strong_bn_stats or self.labeled_bn_stats):
            raise ValueError('strong_bn_stats=False and labeled_bn_stats=False would leave '
                             "the student's BatchNorm running statistics to no batch")
        self.teacher_views = [check_view(v) for v in teacher_views or ()]
        self.view_matrices = [view_matrix(**v) for v in self.teacher_views]
        self.view_iou_thr = check_view_iou_thr(view_iou_thr)
        self.joint_batch = bool(joint_batch)
        if self.joint_batch and not self.strong_bn_stats:
            raise ValueError('joint_batch normalises the labeled and strong scenes together, '
                             'so the strong scenes are in the BatchNorm statistics: it needs '
                             'strong_bn_stats=True')
        if self.joint_batch and not self.labeled_bn_stats:
            raise ValueError('joint_batch normalises the labeled and strong scenes together, '
                             'so the labeled scenes are in the BatchNorm statistics: it needs '
                             'labeled_bn_stats=True')
        if self.joint_batch and not callable(getattr(self.student, 'loss_parts', None)):
            raise ValueError(f'joint_batch needs a detector with loss_parts (PillarDetector); '
                             f'{type(self.student).__name__} has none')
        if not dense_weight >= 0:
            raise ValueError(f'dense_weight must be >= 0, got {dense_weight}')
        self.dense_weight = float(dense_weight)
        head = getattr(self.student, 'bbox_head', None)
        if self.dense_weight > 0 and not callable(getattr(head, 'warp_heatmap', None)):
            raise ValueError(f'dense_weight needs a head with warp_heatmap (CenterHead3D); '
                             f'{type(head).__name__} has none')
        if pseudo_from not in PSEUDO_SOURCES:
            raise ValueError(f'pseudo_from must be one of {PSEUDO_SOURCES}, got '
                             f'{pseudo_from!r}')
        if pseudo_from == 'ground_truth' and (self.dense_weight > 0 or self.view_matrices):
            raise ValueError("pseudo_from='ground_truth' replaces the teacher's boxes, not its "
                             'heatmap (dense_weight) or its extra views (teacher_views)')
        self.pseudo_from = pseudo_from
        self.pseudo_match_iou = None
        if pseudo_from in MIXED_SOURCES:
            if self.dense_weight > 0:
                raise ValueError(f'pseudo_from={pseudo_from!r} mixes labels into the '
                                 "teacher's boxes, not into its heatmap (dense_weight)")
            if pseudo_match_iou is None or len(pseudo_match_iou) != num_classes \
                    or not all(0 < float(t) <= 1 for t in pseudo_match_iou):
                raise ValueError(f'pseudo_from={pseudo_from!r} needs pseudo_match_iou: one '
                                 f'BEV IoU in (0, 1] per class ({num_classes}), got '
                                 f'{pseudo_match_iou!r}')
            self.pseudo_match_iou = torch.tensor([float(t) for t in pseudo_match_iou],
                                                 dtype=torch.float64)
        self.ambiguous_ratio = self._check_signal_option(
            'ambiguous_ratio', ambiguous_ratio, 'class_scores', 1.0)
        self.min_yaw_norm = self._check_signal_option('min_yaw_norm', min_yaw_norm,
                                                      'yaw_norm', 1.0, views_ok=True)
        if pseudo_heading not in HEADING_MODES:
            raise ValueError(f'pseudo_heading must be one of {HEADING_MODES}, got '
                             f'{pseudo_heading!r}')
        if pseudo_heading == 'axis' and not callable(getattr(head, 'nearer_heading', None)):
            raise ValueError(f"pseudo_heading='axis' needs a head whose loss reads yaw_axis "
                             f'(CenterHead3D); {type(head).__name__} has none')
        self.pseudo_heading = pseudo_heading
        self.class_sets = self._class_sets(class_groups, num_classes, head)
        self.bank, self.latest_pasted = None, None
        if object_bank is not None:
            self.bank = ObjectBank(num_classes=num_classes, **object_bank)
        if labeled_paste is not None and self.dense_weight > 0:
            raise ValueError('labeled_paste puts objects the teacher never saw into the strong '
                             'scenes, where dense distillation (dense_weight > 0) would teach '
                             "the teacher's heatmap, without them: use one of the two")
        if labeled_paste is not None:
            check_num_paste(labeled_paste.get('num_paste', ()))
        # the database is read at the first paste (a config builds without the data)
        self.labeled_paste = dict(labeled_paste) if labeled_paste is not None else None
        self.labeled_bank: Optional[ObjectBank] = None
        self.patch_mix = bool(patch_mix)
        if top_support is not None and not float(top_support) > 0:
            raise ValueError(f'top_support must be > 0 (or None: off), got {top_support!r}')
        if top_support is not None and pseudo_from == 'ground_truth':
            raise ValueError("top_support rescales the teacher's scores: not with "
                             "pseudo_from='ground_truth' (score-1 labels)")
        self.top_support = None if top_support is None else float(top_support)
        if self.patch_mix and (self.dense_weight > 0 or labeled_paste is not None):
            raise ValueError('patch_mix moves pseudo boxes between scenes by whole patches: '
                             "not with dense_weight (the teacher's heatmap stays with its "
                             'scene) or labeled_paste (a pasted box may cross a patch border)')

    @staticmethod
    def _class_sets(groups: Optional[Sequence[Sequence[int]]], num_classes: Optional[int],
                    head) -> Optional[Tensor]:
        """``class_groups`` → (C, C) bool, row ``c`` the classes a pseudo box of class ``c``
        teaches as one (its group, or itself); None without groups."""
        if not groups:
            return None
        if not callable(getattr(head, 'partial_class_targets', None)):
            raise ValueError(f'class_groups needs a head whose loss reads class_set '
                             f'(CenterHead3D); {type(head).__name__} has none')
        if num_classes is None:
            raise ValueError('class_groups needs the number of classes (a policy or a head '
                             'that names it)')
        sets = torch.eye(num_classes, dtype=torch.bool)
        seen = set()
        for group in groups:
            members = [int(c) for c in group]
            if len(set(members)) < 2 or any(not 0 <= c < num_classes for c in members):
                raise ValueError(f'each of class_groups must name at least two distinct '
                                 f'classes in [0, {num_classes}), got {list(group)!r}')
            if seen & set(members):
                raise ValueError(f'class_groups must be disjoint, got {groups!r}')
            seen |= set(members)
            for c in members:
                sets[c, members] = True
        return sets

    def _check_signal_option(self, name: str, value: Optional[float], field: str,
                             upper: float, views_ok: bool = False) -> Optional[float]:
        """An option that reads a per-box signal (``field``) of the teacher's own boxes:
        a float in (0, ``upper``], or None. Mixed or ground-truth boxes have none, nor have
        fused views' boxes unless ``views_ok`` (a fused box keeps its top box's)."""
        if value is None:
            return None
        if not 0 < float(value) <= upper:
            raise ValueError(f'{name} must be in (0, {upper}], got {value!r}')
        if self.pseudo_from != 'teacher' or (self.view_matrices and not views_ok):
            needs = "pseudo_from='teacher'" + ('' if views_ok else ' and no teacher_views '
                                                '(their fused boxes have none)')
            raise ValueError(f"{name} reads the teacher's per-box {field}: it needs {needs}, "
                             f'got pseudo_from={self.pseudo_from!r}, '
                             f'{len(self.view_matrices)} teacher views; {name}=None turns '
                             'it off')
        return float(value)

    # ------------------------------------------------------------------ training
    def loss(self, multi_batch_inputs: dict, multi_batch_data_samples: dict) -> dict:
        if (self.unsup_active and self.pseudo_label.score_source == 'labeled_matched'
                and multi_batch_inputs.get('unsup_teacher') is not None):
            self.update_from_labeled(multi_batch_inputs.get('sup'),
                                     multi_batch_data_samples.get('sup'))
        pasted = None
        if (self.bank is not None and self.unsup_active
                and multi_batch_inputs.get('sup') is not None):
            multi_batch_inputs['sup'], pasted = self.paste_objects(
                multi_batch_inputs['sup'], multi_batch_data_samples['sup'])
        if (self.joint_batch and self.unsup_active and multi_batch_inputs.get('sup') is not None
                and multi_batch_inputs.get('unsup_teacher') is not None):
            losses = self.joint_loss(multi_batch_inputs, multi_batch_data_samples)
        else:
            losses = super().loss(multi_batch_inputs, multi_batch_data_samples)
        if pasted is not None:
            device = multi_batch_inputs['sup']['points'][0].device
            losses['pseudo_num_pasted'] = torch.tensor(float(pasted), device=device)
            losses['pseudo_bank_size'] = torch.tensor(float(len(self.bank)), device=device)
        return losses

    def joint_loss(self, multi_batch_inputs: dict, multi_batch_data_samples: dict) -> dict:
        """``joint_batch``: the teacher labels the weak scenes, then one student pass over the
        labeled and the pseudo-labeled strong scenes gives both losses."""
        strong_inputs, strong_samples, stats = self.pseudo_instances(
            multi_batch_inputs['unsup_teacher'], multi_batch_data_samples['unsup_teacher'],
            multi_batch_inputs['unsup_student'], multi_batch_data_samples['unsup_student'])
        sup_samples = multi_batch_data_samples['sup']
        sup, strong = self.student.loss_parts([(multi_batch_inputs['sup'], sup_samples),
                                               (strong_inputs, strong_samples)])
        losses = self.finish_sup_losses(sup, sup_samples, with_unsup=True)
        losses.update(self.finish_strong_losses(strong, strong_inputs, strong_samples, stats))
        return losses

    @torch.no_grad()
    def paste_objects(self, inputs: dict, data_samples: List) -> Tuple[dict, int]:
        """``object_bank``: paste banked objects into each labeled scene; their boxes join
        its ``gt_instances_3d`` (``pasted`` True, other fields zero). Returns the inputs
        with the new points and the number of objects pasted; the samples are changed in
        place."""
        points_out, num = [], 0
        self.latest_pasted = None
        for pts, sample in zip(inputs['points'], data_samples):
            gt = sample.gt_instances_3d
            ignored = sample.get('ignored_instances_3d', InstanceData())
            gt_boxes, avoid = (torch.as_tensor(i.bboxes_3d) if 'bboxes_3d' in i else None
                               for i in (gt, ignored))
            pts, boxes, labels = self.bank.paste(
                pts, gt_boxes, sample.metainfo.get('lidar_aug_matrix', np.eye(4)), avoid=avoid)
            points_out.append(pts)
            num += len(boxes)
            fields = dict(bboxes_3d=boxes.new_zeros(0, 7), labels_3d=labels[:0])
            fields.update({k: torch.as_tensor(v) for k, v in gt.items()})
            pasted = dict(bboxes_3d=boxes, labels_3d=labels)
            merged = InstanceData()
            for key, value in fields.items():
                extra = pasted[key] if key in pasted else value.new_zeros(
                    (len(boxes),) + tuple(value.shape[1:]))
                merged[key] = torch.cat([value, extra.to(value)])
            num_real = len(fields['labels_3d'])
            merged.pasted = torch.arange(num_real + len(boxes), device=boxes.device) >= num_real
            sample.gt_instances_3d = merged
            if self.latest_pasted is None and len(boxes):  # PseudoLabelVisHook draws it
                real = ~merged.pasted
                sample.set_metainfo(dict(pseudo_tiers=dict(
                    high=merged.bboxes_3d[real], high_labels=merged.labels_3d[real],
                    middle=boxes, middle_labels=labels)))
                self.latest_pasted = dict(points=pts.detach(), data_sample=sample)
        return dict(inputs, points=points_out), num

    @staticmethod
    def labeled_labels(samples: List) -> Tensor:
        """Class labels of the labeled scenes' ground-truth boxes (``gt_instances_3d``),
        without the objects the bank pasted into them."""
        if not samples:
            return torch.zeros(0, dtype=torch.long)
        labels = []
        for s in samples:
            gt = s.gt_instances_3d
            lab = torch.as_tensor(gt.labels_3d).long().flatten()
            labels.append(lab[~gt.pasted.to(lab.device)] if 'pasted' in gt else lab)
        return torch.cat(labels)

    @torch.no_grad()
    def update_from_labeled(self, inputs: Optional[dict], data_samples: Optional[List]) -> None:
        """HSSDA's threshold source: the teacher predicts on the labeled scenes, and the
        scores of its boxes whose BEV IoU with a ground-truth box of their class reaches the
        policy's ``match_iou`` update the policy (with none when the batch has no labeled
        scene, so that every rank still takes part in the policy's sync). With
        ``top_support`` the scores are rescaled as the unlabeled scenes' are, from the labeled
        scenes' points, so the thresholds split scores of one kind."""
        scores, labels = [], []
        if inputs is not None and data_samples:
            predictions = self.teacher_predict(inputs, data_samples)
            if self.top_support is not None:
                predictions, _ = self._support_scores(predictions, inputs['points'])
            for pred, sample in zip(predictions, data_samples):
                gt = sample.gt_instances_3d
                if len(pred) == 0 or len(gt) == 0:
                    continue
                matched = match_boxes_bev(pred.bboxes_3d, pred.labels_3d, gt.bboxes_3d,
                                          gt.labels_3d, self.pseudo_label.match_iou)[1].any(1)
                scores.append(pred.scores_3d[matched])
                labels.append(pred.labels_3d[matched])
        device = self.pseudo_label.high_thr.device
        scores = torch.cat(scores) if scores else torch.zeros(0, device=device)
        labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=device)
        self.pseudo_label.update(scores, labels)
        MessageHub.get_current_instance().update_scalar('train/pseudo/num_matched_labeled',
                                                        float(len(scores)))

    def unsup_loss(self, weak_inputs: dict, weak_samples: List, strong_inputs: dict,
                   strong_samples: List) -> dict:
        strong_inputs, strong_samples, stats = self.pseudo_instances(
            weak_inputs, weak_samples, strong_inputs, strong_samples)
        losses = self.student.loss(strong_inputs, strong_samples)
        return self.finish_strong_losses(losses, strong_inputs, strong_samples, stats)

    def finish_strong_losses(self, losses: dict, strong_inputs: dict, strong_samples: List,
                             stats: dict) -> dict:
        """The student's losses on the pseudo-labeled strong scenes, weighted (0 without a
        pseudo box) and prefixed (``unsup_``), with the pseudo-label statistics."""
        num_pseudo = sum(len(s.gt_instances_3d) for s in strong_samples)
        weight = self.unsup_weight if num_pseudo > 0 else 0.0
        # the head's IoU branch learns from labels only (3DIoUMatch): a pseudo box would teach
        # the teacher's own false boxes as well placed
        losses = {k: v for k, v in losses.items() if k != 'loss_iou'}
        if 'loss_heatmap_soft' in losses:
            losses = dict(losses, loss_heatmap_soft=losses['loss_heatmap_soft'] * self.dense_weight)
        device = strong_inputs['points'][0].device
        self.latest_pseudo = dict(inputs=dict(points=[p.detach() for p in strong_inputs['points']]),
                                  data_samples=strong_samples)
        return self.finish_unsup_losses(losses, weight, stats, device)

    @torch.no_grad()
    def teacher_predict(self, inputs: dict, data_samples: List, with_heatmap: bool = False):
        """The teacher's boxes on each scene of ``inputs``, in that scene's frame: with
        ``teacher_views``, the weak view's and the extra views' boxes fused. With
        ``with_heatmap``, ``(boxes, heatmaps)``: also each scene's heatmap probabilities
        (C, H, W; the scene's own view, not the extra views')."""
        self.teacher.eval()
        # fresh samples with the views' meta (the teacher writes its predictions into them):
        # a deep copy of the samples cost a tenth of the teacher's pass at KITTI scale
        samples = [type(s)(metainfo=s.metainfo) for s in data_samples]
        points = list(inputs['points'])
        if self.view_matrices:
            if any(s.metainfo.get('bev_shuffle') is not None for s in data_samples):
                raise ValueError('teacher_views need weak views without a patch shuffle')
            for mat in self.view_matrices:
                for pts, s in zip(inputs['points'], data_samples):
                    weak = np.asarray(s.metainfo.get('lidar_aug_matrix', np.eye(4)),
                                      dtype=np.float64).reshape(4, 4)
                    points.append(transform_points(pts, mat))
                    samples.append(type(s)(metainfo=dict(s.metainfo,
                                                         lidar_aug_matrix=mat @ weak)))
        if with_heatmap:
            results = self.teacher.predict(dict(inputs, points=points), samples,
                                           with_heatmap=True)
            heatmaps = [r.pred_heatmap for r in results[:len(data_samples)]]
        else:
            results = self.teacher.predict(dict(inputs, points=points), samples)
        preds = [r.pred_instances_3d for r in results]
        if not self.view_matrices:
            return (preds, heatmaps) if with_heatmap else preds
        num = len(data_samples)
        back = [np.linalg.inv(mat) for mat in self.view_matrices]
        fused = []
        for i in range(num):
            views = [preds[i]] + [preds[(v + 1) * num + i] for v in range(len(back))]
            boxes = [views[0].bboxes_3d] + [transform_boxes3d(p.bboxes_3d, inv)
                                            for p, inv in zip(views[1:], back)]
            box, score, label, seen, top = fuse_views(
                boxes, [p.scores_3d for p in views], [p.labels_3d for p in views],
                self.view_iou_thr, return_top=True)
            fused.append(InstanceData(bboxes_3d=box, scores_3d=score, labels_3d=label,
                                      num_views=seen))
            if all('yaw_norm' in p for p in views):  # the heading is the top box's
                fused[-1].yaw_norm = torch.cat([p.yaw_norm for p in views])[top]
        log_views_per_box([f.num_views for f in fused])
        return (fused, heatmaps) if with_heatmap else fused

    @torch.no_grad()
    def pseudo_instances(self, weak_inputs: dict, weak_samples: List, strong_inputs: dict,
                         strong_samples: List) -> Tuple[dict, List, dict]:
        """Teacher boxes on the weak views → tiers on the strong views: ``gt_instances_3d``
        (high, and middle with ``weights`` when ``middle='weight'``),
        ``ignored_instances_3d``, and the strong points with low boxes' points removed; with
        ``dense_weight``, also ``soft_heatmap`` and ``soft_heatmap_valid``, the teacher's
        heatmap on the strong view's cells."""
        dense = self.dense_weight > 0
        if dense:
            predictions, heatmaps = self.teacher_predict(weak_inputs, weak_samples,
                                                         with_heatmap=True)
        elif self.pseudo_from == 'ground_truth':
            predictions = [self._labels_as_boxes(s) for s in weak_samples]
        else:
            predictions = self.teacher_predict(weak_inputs, weak_samples)
        support = None
        if self.top_support is not None:
            predictions, support = self._support_scores(predictions, weak_inputs['points'])
        scores = torch.cat([p.scores_3d for p in predictions])
        labels = torch.cat([p.labels_3d for p in predictions])
        if self.pseudo_label.score_source == 'teacher':
            # the scene count lets a policy compare boxes per scene (share and count caps)
            self.pseudo_label.update(scores, labels, num_images=len(predictions))
        split = self.pseudo_label(scores, labels)
        low_mask = split.dropped & (scores >= self.low_score_thr)
        sizes = [len(p) for p in predictions]
        tiers = (split.confident.split(sizes), split.ignored.split(sizes),
                 low_mask.split(sizes))
        points_out = list(strong_inputs['points'])
        counts = dict(high=0, middle=0, low=0, cut=0, removed_points=0)
        if self.ambiguous_ratio is not None:
            counts['ambiguous'] = 0
        if self.min_yaw_norm is not None:
            counts['yaw_masked'] = 0
        if self.class_sets is not None:
            counts['partial_class'] = 0
        if self.pseudo_from in MIXED_SOURCES:
            predictions, tiers, counts['mixed'] = self._mix_labels(predictions, tiers,
                                                                   weak_samples)
        if self.bank is not None:
            counts['banked'] = 0
        if self.labeled_paste is not None:
            counts['labeled_pasted'] = 0
        for i, (pred, high, middle, low) in enumerate(zip(predictions, *tiers)):
            weak, strong = weak_samples[i], strong_samples[i]
            if self.bank is not None and bool(high.any()):
                counts['banked'] += self.bank.add(
                    weak_inputs['points'][i], pred.bboxes_3d[high], pred.labels_3d[high],
                    pred.scores_3d[high], weak.lidar_aug_matrix)
            w2s = weak_to_strong_matrix(weak.lidar_aug_matrix, strong.lidar_aug_matrix)
            boxes = transform_boxes3d(pred.bboxes_3d.float(), w2s)
            shuffle = strong.metainfo.get('bev_shuffle')
            # 'unshuffle_features': the student's features are moved back, boxes stay
            box_shuffle = shuffle if moves_boxes(shuffle) else None
            if box_shuffle is not None:
                moved, whole = shuffle_boxes(boxes, box_shuffle)
                whole = torch.as_tensor(whole, device=boxes.device)
            else:
                moved, whole = boxes, torch.ones(len(boxes), dtype=torch.bool,
                                                 device=boxes.device)
            middle = middle & ~self._middle_is(pred.labels_3d, 'off')
            if self.low == 'off':  # not a tier: neither counted nor drawn
                low = torch.zeros_like(low)
            else:
                low = low & ~overlaps_bev(boxes, boxes[high | middle])
            # class-ambiguous high and middle boxes leave their tiers for the ignored ones
            ambiguous = self._ambiguous(pred) & (high | middle)
            high, middle = high & ~ambiguous, middle & ~ambiguous
            gt_mask = high | (middle & self._middle_is(pred.labels_3d, 'weight'))
            keep_gt = gt_mask & whole
            ignore_mask = ((gt_mask & ~whole) | ambiguous
                           | (middle & self._middle_is(pred.labels_3d, 'ignore')))
            if self.low == 'ignore':
                ignore_mask = ignore_mask | low
            weights = torch.where(high, torch.ones_like(pred.scores_3d),
                                  pred.scores_3d.pow(self.middle_power))
            strong.gt_instances_3d = InstanceData(
                bboxes_3d=moved[keep_gt], labels_3d=pred.labels_3d[keep_gt],
                weights=weights[keep_gt], scores_3d=pred.scores_3d[keep_gt])
            if self.min_yaw_norm is not None:
                yaw_weights = self._yaw_weights(pred)[keep_gt]
                strong.gt_instances_3d.yaw_weights = yaw_weights
                counts['yaw_masked'] += int((yaw_weights == 0).sum())
            if self.class_sets is not None:
                class_set = self.class_sets.to(moved.device)[pred.labels_3d[keep_gt].long()]
                strong.gt_instances_3d.class_set = class_set
                counts['partial_class'] += int((class_set.sum(dim=1) > 1).sum())
            if self.pseudo_heading == 'axis':
                strong.gt_instances_3d.yaw_axis = torch.ones(int(keep_gt.sum()),
                                                             dtype=torch.bool,
                                                             device=moved.device)
            if self.ambiguous_ratio is not None:
                counts['ambiguous'] += int(ambiguous.sum())
            strong.ignored_instances_3d = self._ignored(boxes[ignore_mask],
                                                        pred.labels_3d[ignore_mask],
                                                        box_shuffle, self.patch_mix)
            if dense:
                soft, valid = self.student.bbox_head.warp_heatmap(heatmaps[i], w2s, box_shuffle)
                strong.soft_heatmap, strong.soft_heatmap_valid = soft, valid
            if self.low == 'remove_points' and bool(low.any()):
                pts = points_out[i]
                at = unshuffle_points(pts, shuffle) if shuffle is not None else pts
                inside = points_in_boxes(at, boxes[low]).any(dim=1)
                points_out[i] = pts[~inside]
                counts['removed_points'] += int(inside.sum())
            if self.labeled_paste is not None:
                seen = pred.scores_3d >= self.low_score_thr
                points_out[i], num = self._paste_labeled(points_out[i], strong, boxes[seen],
                                                         box_shuffle)
                counts['labeled_pasted'] += num
            low_shown = low if box_shuffle is None else low & whole
            # a pasted labeled object is drawn as what it teaches: a high box
            gt = strong.gt_instances_3d
            pasted = (gt.pasted if 'pasted' in gt else
                      torch.zeros(len(gt), dtype=torch.bool, device=moved.device))
            strong.set_metainfo(dict(pseudo_tiers=dict(
                high=torch.cat([moved[high & whole], gt.bboxes_3d[pasted].to(moved)]),
                middle=moved[middle & whole], low=moved[low_shown],
                high_labels=torch.cat([pred.labels_3d[high & whole],
                                       gt.labels_3d[pasted].to(pred.labels_3d)]),
                middle_labels=pred.labels_3d[middle & whole],
                low_labels=pred.labels_3d[low_shown])))
            counts['high'] += int((high & whole).sum())
            counts['middle'] += int((middle & whole).sum())
            counts['low'] += int(low.sum())
            counts['cut'] += int((gt_mask & ~whole).sum())
        if self.patch_mix:
            points_out = self._mix_patches(points_out, strong_samples)
        num_high = counts['high']
        stats = self.split_stats(split, scores, labels, num_high)
        stats.update({f'pseudo/num_{k}': float(v) for k, v in counts.items()})
        if support is not None:  # the mean factor of the boxes the tiers could keep
            kept = scores >= self.low_score_thr
            stats['pseudo/top_support'] = float(support[kept].mean()) if bool(kept.any()) \
                else 1.0
        return dict(strong_inputs, points=points_out), strong_samples, stats

    def _support_scores(self, predictions: List, points: List) -> Tuple[List, Tensor]:
        """``top_support``: each scene's boxes with their scores times
        ``exp(-gap / (top_support * dz))``, and the factors of all the boxes."""
        out, factors = [], []
        for pred, pts in zip(predictions, points):
            factor = top_support_factors(pts, pred.bboxes_3d.double(),
                                         self.top_support).to(pred.scores_3d)
            new = pred.clone()
            new.scores_3d = pred.scores_3d * factor
            out.append(new)
            factors.append(factor)
        return out, torch.cat(factors) if factors else torch.zeros(0)

    @staticmethod
    def _labels_as_boxes(sample) -> InstanceData:
        """``pseudo_from='ground_truth'``: a weak view's own labels as score-1 boxes."""
        gt = sample.get('gt_instances_3d')
        if gt is None or 'labels_3d' not in gt:
            raise ValueError("pseudo_from='ground_truth' needs the unlabeled scenes' labels in "
                             'their weak views: an unlabeled file that keeps its instances')
        boxes = torch.as_tensor(gt.bboxes_3d).float().reshape(-1, 7)
        return InstanceData(bboxes_3d=boxes, labels_3d=gt.labels_3d.long(),
                            scores_3d=boxes.new_ones(len(boxes)))

    def _mix_labels(self, predictions: List, tiers: Tuple, weak_samples: List
                    ) -> Tuple[List, Tuple, int]:
        """The mixing diagnostics (``pseudo_from``): each weak view's boxes and tier masks
        (high, middle, low) with its labeled objects added or its false boxes dropped, and
        how many boxes were added, or dropped from a tier in use (the teacher's other boxes,
        below every tier or in a low tier that is off, are dropped too but not counted). A
        box finds a labeled object when their BEV IoU reaches ``pseudo_match_iou`` of the
        object's class and their classes agree (``match_boxes_bev``)."""
        out, out_tiers, num = [], ([], [], []), 0
        for pred, high, middle, low, weak in zip(predictions, *tiers, weak_samples):
            gt = self._labels_as_boxes(weak)
            boxes = pred.bboxes_3d.float()
            gt_boxes, gt_labels = gt.bboxes_3d.to(boxes), gt.labels_3d.to(pred.labels_3d)
            finds = match_boxes_bev(boxes, pred.labels_3d, gt_boxes, gt_labels,
                                    self.pseudo_match_iou)[1]
            if self.pseudo_from == 'teacher_minus_false':
                keep = finds.any(dim=1)
                used = high | middle | (low if self.low != 'off' else torch.zeros_like(low))
                num += int((~keep & used).sum())  # dropped from a tier in use
                fields = (boxes[keep], pred.scores_3d[keep], pred.labels_3d[keep])
                masks = (high[keep], middle[keep], low[keep])
            else:  # teacher_plus_missed
                missed = ~(finds & (high | middle)[:, None]).any(dim=0)
                num += int(missed.sum())
                add = int(missed.sum())
                fields = (torch.cat([boxes, gt_boxes[missed]]),
                          torch.cat([pred.scores_3d, pred.scores_3d.new_ones(add)]),
                          torch.cat([pred.labels_3d, gt_labels[missed]]))
                masks = (torch.cat([high, high.new_ones(add)]),
                         torch.cat([middle, middle.new_zeros(add)]),
                         torch.cat([low, low.new_zeros(add)]))
            out.append(InstanceData(bboxes_3d=fields[0], scores_3d=fields[1],
                                    labels_3d=fields[2]))
            for kept, mask in zip(out_tiers, masks):
                kept.append(mask)
        return out, out_tiers, num

    def _paste_labeled(self, points: Tensor, strong, seen: Tensor,
                       box_shuffle: Optional[dict]) -> Tuple[Tensor, int]:
        """``labeled_paste``: paste labeled objects into one strong scene whose pseudo labels
        are set; ``seen``: the teacher's boxes there, in the strong frame before the shuffle.
        The pasted boxes join its ``gt_instances_3d`` at weight 1 (``pasted`` True)."""
        if self.labeled_bank is None:
            cfg = self.labeled_paste
            self.labeled_bank = ObjectBank.from_database(
                cfg['db_sampler'], cfg['num_paste'], cfg['point_cloud_range'],
                margin=cfg.get('margin', 0.1))
        # where the teacher saw something, in the student's (shuffled) frame
        avoid = self._ignored(seen, torch.zeros(len(seen), dtype=torch.long,
                                                device=seen.device), box_shuffle).bboxes_3d
        ignored = strong.ignored_instances_3d.bboxes_3d
        gt = strong.gt_instances_3d
        # 'fill': up to the sampler's targets, counting the scene's pseudo boxes
        counts = (self.labeled_bank.fill_counts(gt.labels_3d)
                  if self.labeled_paste['num_paste'] == 'fill' else None)
        points, boxes, labels = self.labeled_bank.paste(
            points, gt.bboxes_3d, strong.lidar_aug_matrix,
            avoid=torch.cat([avoid.reshape(-1, 7), ignored.reshape(-1, 7).to(avoid)]),
            counts=counts)
        ones = boxes.new_ones(len(boxes))
        merged = InstanceData(
            bboxes_3d=torch.cat([gt.bboxes_3d, boxes.to(gt.bboxes_3d)]),
            labels_3d=torch.cat([gt.labels_3d, labels.to(gt.labels_3d)]),
            weights=torch.cat([gt.weights, ones.to(gt.weights)]),
            scores_3d=torch.cat([gt.scores_3d, ones.to(gt.scores_3d)]),
            pasted=torch.arange(len(gt) + len(boxes), device=boxes.device) >= len(gt))
        if 'yaw_weights' in gt:  # a labeled object's heading is known
            merged.yaw_weights = torch.cat([gt.yaw_weights, ones.to(gt.yaw_weights)])
        if 'yaw_axis' in gt:  # ... with its direction
            merged.yaw_axis = torch.cat([gt.yaw_axis, ones.new_zeros(len(boxes)).bool()])
        if 'class_set' in gt:  # ... and its class
            own = torch.nn.functional.one_hot(labels.long(), gt.class_set.shape[1]).bool()
            merged.class_set = torch.cat([gt.class_set, own.to(gt.class_set.device)])
        strong.gt_instances_3d = merged
        return points, len(boxes)

    def _ambiguous(self, pred: InstanceData) -> Tensor:
        """``ambiguous_ratio``: which boxes another class's probability at their peak
        reaches ``ambiguous_ratio`` of their score (all False when off)."""
        if self.ambiguous_ratio is None:
            return torch.zeros(len(pred), dtype=torch.bool, device=pred.scores_3d.device)
        if 'class_scores' not in pred:
            raise ValueError("ambiguous_ratio needs the teacher's class_scores: a head that "
                             'gives every class its probability at each box (CenterHead3D)')
        return (best_other_class_score(pred.class_scores, pred.labels_3d)
                >= self.ambiguous_ratio * pred.scores_3d)

    def _yaw_weights(self, pred: InstanceData) -> Tensor:
        """``min_yaw_norm``: 1 for a box whose heading the head is sure of, else 0."""
        if 'yaw_norm' not in pred:
            raise ValueError("min_yaw_norm needs the teacher's yaw_norm: a head that gives "
                             'the length of each box\'s regressed (sin, cos) (CenterHead3D)')
        return (pred.yaw_norm >= self.min_yaw_norm).float()

    def _middle_is(self, labels: Tensor, mode: str) -> Tensor:
        """Which boxes' classes treat the middle tier as ``mode`` (``middle`` is one mode
        for every class, or one a class)."""
        if isinstance(self.middle, str):
            return torch.full(labels.shape, self.middle == mode, dtype=torch.bool,
                              device=labels.device)
        per_class = torch.tensor([m == mode for m in self.middle], dtype=torch.bool,
                                 device=labels.device)
        return per_class[labels.long()]

    @staticmethod
    def _ignored(boxes: Tensor, labels: Tensor, shuffle: Optional[dict],
                 with_patch: bool = False) -> InstanceData:
        """Ignored boxes in the strong view: with a shuffle, one piece per patch touched;
        ``with_patch`` adds each piece's patch (``patch``, -1 without a shuffle)."""
        if shuffle is not None and len(boxes):
            pieces, owner, patch = shuffle_box_pieces(boxes, shuffle, return_patch=True)
            owner = torch.as_tensor(owner, device=boxes.device)
            out = InstanceData(bboxes_3d=pieces, labels_3d=labels[owner])
        else:
            patch = -np.ones(len(boxes), dtype=np.int64)
            out = InstanceData(bboxes_3d=boxes, labels_3d=labels)
        if with_patch:
            out.patch = torch.as_tensor(patch, dtype=torch.long, device=boxes.device)
        return out

    def _mix_patches(self, points: List[Tensor], samples: List) -> List[Tensor]:
        """``patch_mix``: the strong scenes trade their shuffle's patches (the module doc).
        Returns the mixed scenes' points; each sample gets its mixed scene's pseudo boxes,
        ignored pieces and tier picture, and ``bev_mix`` (the batch position of the scene
        that fills each patch). A point, box or piece outside the grid stays in its scene."""
        infos = [s.metainfo.get('bev_shuffle') for s in samples]
        if not all(moves_boxes(i) for i in infos):
            raise ValueError("patch_mix needs every strong view shuffled with boxes moving "
                             "(BEVPatchShuffle, mode='move_boxes') in the unlabeled pipeline")
        info = infos[0]
        if any(list(i['range']) != list(info['range']) or tuple(i['grid']) != tuple(info['grid'])
               for i in infos):
            raise ValueError('patch_mix needs one shuffle grid and range for every strong view')
        num = len(samples)
        sources = patch_sources(num, info)

        def patches(xy: Tensor) -> np.ndarray:  # the patch of each BEV position
            return patch_index(xy.detach().cpu().double().numpy()[:, :2].reshape(-1, 2), info)

        def taken(items, item_patches: np.ndarray, scene: int, mixed: int):
            mask = torch.as_tensor(taken_by(item_patches, sources, scene, mixed))
            return items[mask.to(items.device) if isinstance(items, Tensor) else mask]

        gts = [s.gt_instances_3d for s in samples]
        ignored = [s.ignored_instances_3d for s in samples]
        tiers = [s.metainfo['pseudo_tiers'] for s in samples]
        point_patches = [patches(p) for p in points]
        gt_patches = [patches(g.bboxes_3d) for g in gts]
        ignored_patches = [i.patch.cpu().numpy() for i in ignored]
        for i in ignored:
            del i.patch
        tier_patches = [{tier: patches(t[tier]) for tier in ('high', 'middle', 'low')}
                        for t in tiers]
        out = []
        for m, sample in enumerate(samples):
            scenes = range(num)
            out.append(torch.cat([taken(points[s], point_patches[s], s, m) for s in scenes]))
            sample.gt_instances_3d = InstanceData.cat(
                [taken(gts[s], gt_patches[s], s, m) for s in scenes])
            sample.ignored_instances_3d = InstanceData.cat(
                [taken(ignored[s], ignored_patches[s], s, m) for s in scenes])
            picture = {}
            for tier in ('high', 'middle', 'low'):
                for key in (tier, f'{tier}_labels'):
                    picture[key] = torch.cat([taken(t[key], tier_patches[s][tier], s, m)
                                              for s, t in enumerate(tiers)])
            sample.set_metainfo(dict(pseudo_tiers=picture,
                                     bev_mix=dict(sources=sources[m].tolist())))
        return out
