"""Label efficiency of the point-cloud detector on the synthetic LiDAR demo scenes, over
several seeds, with the same detector, labeled scenes per iteration, schedule, iterations
and augmentation of the labeled scenes on every side.

    python benchmarks/label_efficiency_3d.py [--method sup | --method semi [--methods ...]]
        [--ablations ...] [--seeds 0 1 2] [--work-dir DIR] [--reuse] [--out FILE]
        [--cfg-options KEY=VALUE ...] [--detector-options KEY=VALUE ...]
        [--merge EARLIER.json] [--protocol PROTOCOL.json]

The demo's two-stage protocol (as in 2D). Stage 1, per seed: supervised from scratch on
10% of the labeled frames and on all of them, 1,200 iterations each. Stage 2 continues each
from its checkpoint for 1,000 iterations with the same schedule and labeled scenes per
iteration: supervised on the 10% (``sup``) and on all labels (``oracle``) with
``--method sup``; with ``--method semi`` also each semi-supervised method (teacher
``semi``, student ``semi_student``: mean teacher, HSSDA-style) and each ablation (one tier
or the shuffle off). ``gap_closed = (semi - sup) / (oracle - sup)``. The stage-1 values are
kept under ``stage1``.

Runs go to ``{work_dir}/seed{seed}/{config name}[_{variant}]``; ``--reuse`` takes a
finished run whose resolved config and options are unchanged, or whose settings with its
options are (a variant whose options became the config's defaults). ``--cfg-options`` go to every
run, stage 1 included (``channels_last=False`` repeats runs made before the CPU weights went
channels-last). ``--detector-options`` change the detector on every side, stage 1 included
(``bbox_head.iou_branch=True`` gives every run the head's IoU branch): ``model.KEY`` in
the supervised configs, ``model.detector.KEY`` in the teacher-student ones. ``--merge`` takes the seeds an earlier JSON of this script holds and
``--seeds`` does not name, as they are: a 3-seed protocol split over days or machines (with
the same code and options) becomes one table. The metric is
``Box3DAPMetric``'s headline ``ap3d/mAP`` (3D AP averaged over the classes, R40, at the IoU
set the config names ``primary``); every key of each final evaluation is kept in the JSON.
``--protocol benchmarks/protocols/demo3d_gt-sample.json`` runs the same protocol with GT
sampling (``ObjectSample``) in every labeled pipeline, as the 3D peers train, on every side:
the 10% runs and the semi-supervised ones paste objects of the labeled split's database, the
oracle's of every train frame (the databases are built first).
Writes ``benchmarks/results/label_efficiency_3d.json``: top-level ``sup``, ``oracle`` (and
with ``semi``: ``semi``, ``semi_student``, ``gap_closed`` of the best method), ``per_seed``,
``std``, ``seeds``, ``iou_thresholds``, other methods under ``methods``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from ssl_det.datasets.demo_data_3d import (ensure_demo_data_3d,  # noqa: E402
                                           ensure_demo_gt_databases)
from ssl_det.utils import experiment  # noqa: E402

DEFAULT_PROTOCOL = osp.join(ROOT, 'benchmarks', 'protocols', 'demo3d.json')
# the protocol of this run (main's --protocol rebinds the three)
PROTOCOL = dict(experiment.load_protocol(DEFAULT_PROTOCOL),
                file=osp.relpath(DEFAULT_PROTOCOL, ROOT))
DATA_ROOT = osp.join(ROOT, PROTOCOL['data'])
STAGE2 = PROTOCOL['stage2']
# the hidden-label diagnostics' unlabeled file (hssda_gt_*): the unlabeled split's frames
# with their labels
UNLABELED_WITH_LABELS = 'semi_anns/train.1@10-unlabeled-with-labels.json'
ABLATIONS = {
    'hssda_no_middle': ('hssda', ['model.middle=off'], 'middle tier off'),
    'hssda_middle_sq': ('hssda', ['model.middle_power=2.0'],
                        "middle boxes weighted by the teacher's score squared (sharper)"),
    'hssda_middle_ignore': ('hssda', ['model.middle=ignore'], 'middle boxes ignored, not weighted'),
    # 3D AP at IoU 0.5 needs the box code right: the pseudo boxes teach the heatmap only
    'hssda_unsup_heatmap': ('hssda', ['model.unsup_loss_keys=[loss_heatmap]'],
                            "the strong scenes' heatmap loss only: pseudo boxes teach where "
                            'objects are, the labeled scenes their box code'),
    # HSSDA's code keeps the middle tier off for pedestrians; the default teachers' middle
    # pedestrians are right a third of the time (Car 0.76, Cyclist 0.44)
    'hssda_ped_middle_off': ('hssda', ['model.middle=[weight,off,weight]'],
                             "pedestrians' middle tier off (HSSDA's code), the other classes' "
                             'weighted'),
    'hssda_ped_middle_ignore': ('hssda', ['model.middle=[weight,ignore,weight]'],
                                "pedestrians' middle boxes ignored, the other classes' "
                                'weighted'),
    # the low tier is off in the hssda config since 2026-12-03 (hssda_no_low was the best
    # variant at 3 seeds); hssda_no_low's rows in the JSON are the config's now
    'hssda_no_low': ('hssda', ['model.low=off'], 'low tier off (no points removed)'),
    'hssda_low': ('hssda', ['model.low=remove_points'],
                  "HSSDA's low tier on: the points of low boxes (0.1 <= score < low) removed "
                  "from the student's input (the config's default before 2026-12-03)"),
    'hssda_low_ignore': ('hssda', ['model.low=ignore'], 'low boxes ignored, points kept'),
    'hssda_no_shuffle': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                   '.unsup_student.3.prob=0.0'], 'patch shuffle off'),
    'hssda_unsup_0': ('hssda', ['model.unsup_weight=0.0'],
                      'no unlabeled loss: the teacher is an EMA of a supervised student'),
    'hssda_unsup_2': ('hssda', ['model.unsup_weight=2.0'], 'unlabeled loss weight 2'),
    'hssda_unsup_0.5': ('hssda', ['model.unsup_weight=0.5'], 'unlabeled loss weight 0.5'),
    # the shuffle is the part that matters most (-0.020 without it, 3 seeds): finer patches.
    # 3 x 3 was above 2 x 2 on seeds 0-2 and below on seed 3 (level over four seeds); the
    # config's grid was 3 x 3 for part of the thirty-sixth session, when hssda_shuffle_2x2
    # trained label_efficiency_3d_seed3.json's 2 x 2 run, and is 3 x 3 again since the
    # thirty-eighth, with the top support (hssda_3x3_top_support's rows are the config's)
    'hssda_shuffle_3x3': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                    '.unsup_student.3.grid=[3,3]'],
                          'patch shuffle over a 3 x 3 grid of BEV patches instead of 2 x 2'),
    'hssda_shuffle_2x2': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                    '.unsup_student.3.grid=[2,2]'],
                          "patch shuffle over HSSDA's 2 x 2 grid"),
    # the shuffle across the batch: each strong scene's patches filled from random scenes
    'hssda_patch_mix': ('hssda', ['model.patch_mix=True'],
                        "the strong scenes trade their shuffle's patches (a permutation of "
                        'the scenes per patch)'),
    # the two candidates of the thirty-sixth and thirty-seventh sessions together: the
    # config since the thirty-eighth (above the default before it on every seed of the
    # held-out scenes, level on val); hssda_2x2_no_top_support is that default
    'hssda_3x3_top_support': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                        '.unsup_student.3.grid=[3,3]', 'model.top_support=0.5'],
                              'patch shuffle on a 3 x 3 grid and the teacher scores times '
                              "how well points reach each box's top"),
    # a sparser student view: 30% of its points dropped instead of 10%
    'hssda_dropout_0.3': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                    '.unsup_student.2.drop_ratio=0.3'],
                          "30% of the strong view's points dropped (the config's 10%)"),
    # the teacher's scores times how well points reach each box's top (the config's since
    # the thirty-eighth session, with the 3 x 3 grid)
    'hssda_top_support': ('hssda', ['model.top_support=0.5'],
                          "teacher scores times exp(-gap / (0.5 dz)), gap: the box's top "
                          'above its highest point'),
    'hssda_no_top_support': ('hssda', ['model.top_support=None'],
                             "the teacher's scores as they are (no top support)"),
    'hssda_2x2_no_top_support': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                           '.unsup_student.3.grid=[2,2]',
                                           'model.top_support=None'],
                                 "HSSDA's 2 x 2 patches and the teacher's scores as they are "
                                 '(the config until the thirty-eighth session)'),
    # the feature maps' cells must split along the patch borders: 2 x 2 patches
    'hssda_unshuffle_features': ('hssda', ['train_dataloader.dataset.datasets.1.pipeline.1'
                                           '.unsup_student.3.mode=unshuffle_features',
                                           'train_dataloader.dataset.datasets.1.pipeline.1'
                                           '.unsup_student.3.grid=[2,2]'],
                                 "patch shuffle with HSSDA's feature un-shuffle: boxes stay, "
                                 'the BEV features move back after the backbone'),
    # DeepPCB's lever (docs/benchmarks.md: 4 -> 8 -> 12 unlabeled crops an iteration): the
    # 4 labeled scenes unchanged, 8 unlabeled ones instead of 4
    'hssda_unlabeled_8': ('hssda', ['train_dataloader.batch_size=12',
                                    'train_dataloader.sampler.batch_size=12',
                                    'train_dataloader.sampler.source_ratio=[1,2]'],
                          '8 unlabeled scenes per iteration instead of 4 (the labeled 4 '
                          'unchanged)'),
    'hssda_unlabeled_12': ('hssda', ['train_dataloader.batch_size=16',
                                     'train_dataloader.sampler.batch_size=16',
                                     'train_dataloader.sampler.source_ratio=[1,3]'],
                           '12 unlabeled scenes per iteration (the labeled 4 unchanged)'),
    # the same 8 scenes a pass, 2 of them labeled: fewer passes over the 60 labeled scenes
    # (the supervised stage 2 ends below its stage 1) and more unlabeled ones, at the cost of 4 + 4
    'hssda_labeled_2': ('hssda', ['train_dataloader.sampler.source_ratio=[1,3]'],
                        '2 labeled + 6 unlabeled scenes per iteration instead of 4 + 4'),
    # the config's keep-rate in the thirty-third session (above 0.99 on every seed): this name
    # trained the runs of label_efficiency_3d_2026-12-07_plain_pillars.json before that change
    'hssda_ema_0.98': ('hssda', ['custom_hooks.2.momentum_decay=0.98'],
                       'EMA keep-rate 0.98 (the default of the thirty-third session)'),
    'hssda_ema_0.99': ('hssda', ['custom_hooks.2.momentum_decay=0.99'],
                       'EMA keep-rate 0.99 (the default until 2026-12-07)'),
    'hssda_ema_0.98_labeled_2': ('hssda', ['custom_hooks.2.momentum_decay=0.98',
                                           'train_dataloader.sampler.source_ratio=[1,3]'],
                                 'EMA keep-rate 0.98 and 2 labeled + 6 unlabeled scenes per '
                                 'iteration'),
    # the config's keep-rate since the thirty-fourth session (with the pillars' height profile,
    # above 0.98 on every seed): this name trained the runs of label_efficiency_3d.json before
    # that change, and repeats them since
    'hssda_ema_0.97': ('hssda', ['custom_hooks.2.momentum_decay=0.97'],
                       'EMA keep-rate 0.97 (a faster teacher still)'),
    # with 8 unlabeled scenes a step the student's weights are less noisy: does the teacher
    # need less averaging?
    'hssda_ema_0.96': ('hssda', ['custom_hooks.2.momentum_decay=0.96'],
                       'EMA keep-rate 0.96 (a window of 25 iterations)'),
    'hssda_ema_0.95': ('hssda', ['custom_hooks.2.momentum_decay=0.95'],
                       'EMA keep-rate 0.95 (a window of about 20 iterations)'),
    'hssda_ema_0.98_unlabeled_8': ('hssda', ['custom_hooks.2.momentum_decay=0.98',
                                             'train_dataloader.batch_size=12',
                                             'train_dataloader.sampler.batch_size=12',
                                             'train_dataloader.sampler.source_ratio=[1,2]'],
                                   'EMA keep-rate 0.98 and 8 unlabeled scenes per iteration'),
    'hssda_labeled_bn': ('hssda', ['model.joint_batch=False', 'model.strong_bn_stats=False'],
                         "the strong scenes leave the student's BatchNorm running statistics "
                         'to the labeled scenes (2D default since 2026-12-03)'),
    'hssda_strong_bn': ('hssda', ['model.joint_batch=False', 'model.labeled_bn_stats=False'],
                        "the labeled scenes leave the student's BatchNorm running statistics "
                        'to the strong scenes'),
    'hssda_views_flip': ('hssda', ['model.teacher_views=[flip_y]', 'model.min_yaw_norm=None'],
                         'the teacher also labels each weak scene mirrored (y -> -y); the '
                         "two views' boxes fused (consensus scores)"),
    # the same mirrored view alone: a fused box keeps its top box's yaw_norm, so the config's
    # min_yaw_norm applies (its two-view consensus ranks Pedestrian and Cyclist boxes better)
    'hssda_teacher_flip': ('hssda', ['model.teacher_views=[flip_y]'],
                           'the teacher also labels each weak scene mirrored (y -> -y), the '
                           "two views' boxes fused; headings masked as the default's"),
    'hssda_dense': ('hssda', ['model.dense_weight=4.0'],
                    "dense distillation: the student's heatmap on the strong scenes also "
                    "learns the teacher's whole heatmap (mapped weak -> strong, quality "
                    'focal loss), beside the tiers'),
    # the default before 2026-12-07 (one pass was above it on 5 seeds of 6, two machine types)
    'hssda_two_passes': ('hssda', ['model.joint_batch=False'],
                         'two student passes, one over the labeled scenes and one over the '
                         'strong scenes (each batch normalised by its own statistics)'),
    # the keep-rate that won on DeepPCB's real scans (0.995 against 0.99, docs/benchmarks.md)
    'hssda_ema_0.995': ('hssda', ['custom_hooks.2.momentum_decay=0.995'],
                        'EMA keep-rate 0.995 instead of 0.99 (a slower teacher)'),
    # the three one-change candidates that each closed 0.43-0.44 at 3 seeds, on different
    # seeds: together, to see whether their gains add up
    'hssda_joint_dense_ema': ('hssda', ['model.joint_batch=True', 'model.dense_weight=4.0',
                                        'custom_hooks.2.momentum_decay=0.995'],
                              'one student pass, dense distillation and keep-rate 0.995 '
                              'together'),
    # the default teachers' confident boxes are Car 0.46-0.48 of them against 0.55 of the
    # hidden objects, Pedestrian 0.31-0.37 against 0.24 (a fifth on pedestrian-sized clutter)
    'hssda_class_shares': ('hssda', ['model.pseudo_label.share_cap=1.0',
                                     'model.pseudo_label.share_floor=1.0'],
                           "each class's share of the confident boxes held to its share of "
                           'the labeled boxes (DynamicThreshold share_cap and share_floor 1.0)'),
    # PseudoAugment's pseudo frames: the teacher's surest objects (score >= 0.7 and the high
    # tier) pasted into the labeled scenes (which hold 5.1 / 2.3 / 1.6 labeled objects each)
    'hssda_bank': ('hssda', ['model.object_bank.num_paste=[2,3,3]',
                             'model.object_bank.point_cloud_range=[0,-32,-3,64,32,1]',
                             'model.object_bank.min_score=0.7'],
                   "the teacher's surest objects banked with their points and pasted into "
                   'the labeled scenes (2 cars, 3 pedestrians, 3 cyclists each)'),
    # a diagnostic, not a method: the unlabeled scenes' hidden labels as the pseudo labels
    # (score 1, all high boxes), everything else the default's: the recipe's ceiling
    'hssda_gt_pseudo': ('hssda', ['model.pseudo_from=ground_truth', 'model.min_yaw_norm=None',
                                  'model.top_support=None',
                                  'train_dataloader.dataset.datasets.1.ann_file='
                                  + UNLABELED_WITH_LABELS],
                        "diagnostic: the unlabeled scenes' own labels as pseudo labels (perfect "
                        'pseudo labels, score 1), the rest of the default unchanged'),
    # diagnostics that mix the hidden labels with the teacher's boxes (BEV IoU per class as
    # the headline's loose set): which of its errors, missed objects or false boxes, costs
    # the gain that perfect pseudo labels show
    'hssda_gt_plus_missed': ('hssda', ['model.pseudo_from=teacher_plus_missed',
                                       'model.min_yaw_norm=None',
                                       'model.pseudo_match_iou=[0.5,0.25,0.25]',
                                       'train_dataloader.dataset.datasets.1.ann_file='
                                       + UNLABELED_WITH_LABELS],
                             "diagnostic: the teacher's boxes, plus the hidden objects no high "
                             'or middle box of their class finds, as high boxes'),
    'hssda_gt_minus_false': ('hssda', ['model.pseudo_from=teacher_minus_false',
                                       'model.min_yaw_norm=None',
                                       'model.pseudo_match_iou=[0.5,0.25,0.25]',
                                       'train_dataloader.dataset.datasets.1.ann_file='
                                       + UNLABELED_WITH_LABELS],
                             "diagnostic: the teacher's boxes without those that find no "
                             'hidden object of their class (every tier)'),
    'hssda_ambiguous': ('hssda', ['model.ambiguous_ratio=0.5'],
                        'class-ambiguous pseudo boxes (another class at half the score or '
                        'more at the peak) ignored'),
    # the hssda config masks unsure headings since 2026-12-06 (hssda_yaw_norm was above the
    # default on every seed); hssda_yaw_norm's rows in the JSON are the config's now, and
    # every row measured before (the hssda rows included) is hssda_yaw_all's
    'hssda_yaw_norm': ('hssda', ['model.min_yaw_norm=0.5'],
                       "no heading taught by pseudo boxes whose regressed (sin, cos) is "
                       'shorter than 0.5'),
    'hssda_yaw_all': ('hssda', ['model.min_yaw_norm=None'],
                      "every pseudo box's heading taught (the default before 2026-12-06)"),
    'hssda_heading_axis': ('hssda', ['model.pseudo_heading=axis'],
                           "pseudo boxes' headings teach their axis, not their direction "
                           '(the nearer of each heading and its reverse)'),
    'hssda_matched_thr': ('hssda', ['model.pseudo_label.type=MatchedScoreThreshold'],
                          "HSSDA's threshold rule: 2-means centres of the teacher's scores "
                          'on boxes matching labels'),
    'hssda_ped_cyc_union': ('hssda', ['model.class_groups=[[1,2]]'],
                            'pedestrian and cyclist pseudo boxes teach that one of the two '
                            'is there, not which (partial class labels)'),
}
# hssda_paste: the GT-sampling protocol's HSSDA-style run with GT sampling on the student's
# whole input (labeled objects pasted into the strong scenes too; TeacherStudent3D's
# labeled_paste); only that protocol has it
SEMI = ('mean_teacher', 'hssda', 'hssda_paste')
METRIC = 'ap3d/mAP'


def write_unlabeled_with_labels(data_root: str) -> str:
    """``UNLABELED_WITH_LABELS``: the unlabeled split's frames as ``train.json`` labels them
    (the hidden-label diagnostics, ``hssda_gt_*``). Returns its path."""
    ann = osp.join(data_root, 'semi_anns')
    with open(osp.join(ann, 'train.1@10-unlabeled.json')) as f:
        unlabeled = json.load(f)
    with open(osp.join(data_root, 'train.json')) as f:
        train = json.load(f)
    labels = {item['frame_id']: item['instances'] for item in train['data_list']}
    missing = [item['frame_id'] for item in unlabeled['data_list']
               if item['frame_id'] not in labels]
    if missing:
        raise ValueError(f'{len(missing)} unlabeled frames are not in train.json, e.g. '
                         f'{missing[:3]}')
    out = dict(unlabeled, data_list=[dict(item, instances=labels[item['frame_id']])
                                     for item in unlabeled['data_list']])
    path = osp.join(data_root, UNLABELED_WITH_LABELS)
    with open(path, 'w') as f:
        json.dump(out, f)
    return path


def mean_std(values):
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def value(metrics: dict, network: str = '') -> float:
    key = f'{network}/{METRIC}' if network else METRIC
    if key not in metrics:
        raise KeyError(f'no {key} among {sorted(metrics)}')
    return float(metrics[key])


def has_student(name: str) -> bool:
    """A teacher-student run (a semi-supervised method or an ablation of one)."""
    return name in SEMI or name in ABLATIONS


def runs_of_seed(seed: int, names, args) -> dict:
    """Stage 1 (10% and all labels) and every stage-2 run of one seed (the demo protocol)."""
    specs = [f'{n}={ABLATIONS[n][0]}' if n in ABLATIONS else n for n in names]
    extra = list(getattr(args, 'cfg_options', None) or [])
    detector = list(getattr(args, 'detector_options', None) or [])
    options = {n: ABLATIONS.get(n, (None, []))[1] + extra
               + detector_options(detector, has_student(n)) for n in names}
    options.update({f'pretrain_{labels}': extra + detector_options(detector, False)
                    for labels in PROTOCOL['pretrain']})
    return experiment.two_stage(PROTOCOL, specs, seed, args.work_dir, args.iters,
                                args.stage2_iters, options, args.reuse)


def detector_options(options, teacher_student: bool) -> list:
    """``--detector-options``: options of the detector (``KEY=VALUE``, keys under the
    detector's config) as the run's config names them: ``model.KEY`` in a detector's config,
    ``model.detector.KEY`` in a teacher-student one. The same detector on every side."""
    prefix = 'model.detector.' if teacher_student else 'model.'
    return [prefix + option for option in options]


def record(res: dict, seed: int, val: float) -> dict:
    return dict(seed=seed, value=val, seconds=res['seconds'],
                work_dir=osp.relpath(res['work_dir'], ROOT), metrics=res['metrics'])


def config_iterations() -> dict:
    """Stage-1 and stage-2 iterations of the protocol's configs (the runs' defaults)."""
    from mmengine.config import Config

    def iters(config):
        return int(Config.fromfile(osp.join(ROOT, config)).train_cfg.max_iters)
    return dict(stage1=iters(PROTOCOL['pretrain']['10pct']),
                stage2=iters(STAGE2['sup'][1]))


def use_protocol(path: str) -> None:
    """Make ``path`` the protocol of this run (its configs, data and stage-2 table)."""
    global PROTOCOL, DATA_ROOT, STAGE2
    PROTOCOL = experiment.load_protocol(path)
    PROTOCOL['file'] = osp.relpath(osp.abspath(path), ROOT)
    DATA_ROOT = osp.join(ROOT, PROTOCOL['data'])
    STAGE2 = PROTOCOL['stage2']


def merged_seeds(path: str, names, seeds, cfg_options=(), iterations=None,
                 detector_opts=()) -> dict:
    """The seeds of an earlier JSON of this script that ``seeds`` does not name, as
    ``{seed: (stage-1 values, {run name: record})}``. Every run of ``names`` must be there for
    each such seed, with a student value for the semi-supervised ones, and the earlier runs
    must have had the same ``--cfg-options`` and ``--detector-options`` and, when ``iterations`` is given, the same
    iterations (an earlier JSON that records none ran the configs' own)."""
    with open(path) as f:
        earlier = json.load(f)
    if not earlier.get('metric', '').startswith(f'{METRIC}:'):
        raise ValueError(f'{path}: metric {earlier.get("metric")!r}, not {METRIC}')
    # a JSON that names no protocol file ran the default one
    theirs = earlier.get('protocol_file', osp.relpath(DEFAULT_PROTOCOL, ROOT))
    if theirs != PROTOCOL['file']:
        raise ValueError(f'{path}: its runs had protocol {theirs}, these have '
                         f"{PROTOCOL['file']}")
    if list(earlier.get('cfg_options', [])) != list(cfg_options):
        raise ValueError(f"{path}: its runs had --cfg-options {earlier.get('cfg_options', [])}, "
                         f'these have {list(cfg_options)}')
    if list(earlier.get('detector_options', [])) != list(detector_opts):
        raise ValueError(f"{path}: its runs had --detector-options "
                         f"{earlier.get('detector_options', [])}, these have "
                         f'{list(detector_opts)}')
    if iterations is not None:
        theirs = earlier.get('iterations') or config_iterations()
        if theirs != iterations:
            raise ValueError(f'{path}: its runs had {theirs} iterations, these have '
                             f'{iterations}')
    out = {}
    for i, seed in enumerate(earlier['seeds']):
        if seed in seeds:
            continue
        records = {}
        for name in names:
            rec = [r for r in earlier['runs'].get(name, []) if r['seed'] == seed]
            if len(rec) != 1:
                raise ValueError(f'{path}: {len(rec)} runs of {name!r} for seed {seed}; '
                                 f'--seeds {seed} trains them here instead')
            if has_student(name) and f'student/{METRIC}' not in rec[0]['metrics']:
                raise ValueError(f"{path}: {name!r} of seed {seed} has no student value")
            records[name] = rec[0]
        out[seed] = ({k: earlier['stage1'][k]['per_seed'][i] for k in ('sup', 'oracle')},
                     records)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--method', default='sup', choices=('sup', 'semi'))
    # an ablation named here (e.g. hssda_unsup_2) competes for the top-level 'best method'
    parser.add_argument('--methods', nargs='+', default=['mean_teacher', 'hssda'],
                        choices=list(SEMI) + sorted(ABLATIONS))
    parser.add_argument('--ablations', nargs='*', default=[], choices=sorted(ABLATIONS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=None,
                        help='iterations of the stage-1 runs (default: the configs\')')
    parser.add_argument('--stage2-iters', type=int, default=None,
                        help='iterations of the stage-2 runs (default: the configs\')')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'label_efficiency_3d'))
    parser.add_argument('--reuse', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='options for every run, stage 1 included')
    parser.add_argument('--detector-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help="options of the detector in every run, stage 1 included (keys "
                             "under the detector's config, e.g. bbox_head.iou_branch=True"
                             "): model.KEY in the supervised configs, model.detector.KEY in "
                             'the teacher-student ones')
    parser.add_argument('--merge', metavar='JSON',
                        help='an earlier output of this script: its seeds that --seeds does '
                             'not name join the table as they are')
    parser.add_argument('--protocol', default=DEFAULT_PROTOCOL,
                        help='the protocol table (benchmarks/protocols/demo3d_gt-sample.json: '
                             'GT sampling in every labeled pipeline)')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'label_efficiency_3d.json'))
    args = parser.parse_args(argv)
    use_protocol(args.protocol)
    missing = sorted({ABLATIONS[n][0] if n in ABLATIONS else n
                      for n in (args.methods + args.ablations if args.method == 'semi' else [])}
                     - set(STAGE2))
    if missing:
        parser.error(f'{PROTOCOL["file"]} has no stage-2 run {missing} (it has {sorted(STAGE2)})')
    if PROTOCOL.get('gt_databases'):
        ensure_demo_gt_databases(DATA_ROOT)
    else:
        ensure_demo_data_3d(DATA_ROOT)
    if any(UNLABELED_WITH_LABELS in option for name in args.ablations
           for option in ABLATIONS.get(name, ('', []))[1]):
        write_unlabeled_with_labels(DATA_ROOT)

    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, PROTOCOL['pretrain']['10pct']))
    semi = args.method == 'semi'
    names = ['sup', 'oracle'] + (list(dict.fromkeys(args.methods + args.ablations))
                                 if semi else [])
    per_seed = {n: [] for n in names}
    students = {n: [] for n in names if has_student(n)}
    first_stage = {'sup': [], 'oracle': []}
    runs = {n: [] for n in names}
    iterations = config_iterations()
    iterations = dict(stage1=args.iters or iterations['stage1'],
                      stage2=args.stage2_iters or iterations['stage2'])
    earlier = (merged_seeds(args.merge, names, args.seeds, args.cfg_options, iterations,
                            args.detector_options) if args.merge else {})
    args.seeds = sorted(set(args.seeds) | set(earlier))
    for seed in args.seeds:
        if seed in earlier:
            stage1, records = earlier[seed]
            print(f'[seed {seed}] taken from {args.merge}', flush=True)
        else:
            results = runs_of_seed(seed, names, args)
            stage1 = {name: value(results[f'pretrain_{labels}']['metrics'])
                      for name, labels in (('sup', '10pct'), ('oracle', 'all'))}
            records = {}
            for name in names:
                res = results[name]
                val = value(res['metrics'], 'teacher' if name in students else '')
                records[name] = record(res, seed, val)
        for name in first_stage:
            first_stage[name].append(stage1[name])
        for name in names:
            rec = records[name]
            per_seed[name].append(rec['value'])
            runs[name].append(rec)
            if name in students:
                students[name].append(value(rec['metrics'], 'student'))
            print(f'[seed {seed}] {name}: {METRIC} = {rec["value"]:.4f}', flush=True)

    def mean(v):
        return mean_std(v)[0]

    result = dict(seeds=args.seeds,
                  protocol=f'two-stage: {iterations["stage1"]:,} iterations from scratch, '
                           f'{iterations["stage2"]:,} continuing (supervised or '
                           'semi-supervised)',
                  iterations=iterations, protocol_file=PROTOCOL['file'])
    if args.cfg_options:
        result['cfg_options'] = args.cfg_options
    if args.detector_options:
        result['detector_options'] = args.detector_options
    if earlier:
        result['merged'] = dict(path=osp.relpath(osp.abspath(args.merge), ROOT),
                                seeds=sorted(earlier))
    result['sup'], result['oracle'] = mean(per_seed['sup']), mean(per_seed['oracle'])
    gap = result['oracle'] - result['sup']
    methods = {}
    for name in names:
        if name in students:
            sm, ss = mean_std(per_seed[name])
            methods[name] = dict(
                semi=sm, semi_std=ss, semi_student=mean(students[name]),
                semi_student_std=mean_std(students[name])[1], per_seed=per_seed[name],
                per_seed_student=students[name],
                gain=sm - result['sup'],
                gain_per_seed=[a - b for a, b in zip(per_seed[name], per_seed['sup'])],
                gap_closed=(sm - result['sup']) / gap if gap > 0 else None,
                what=ABLATIONS[name][2] if name in ABLATIONS else STAGE2[name][1])
    best = max(args.methods, key=lambda n: methods[n]['semi']) if semi else None
    if best:
        result.update(semi=methods[best]['semi'], semi_student=methods[best]['semi_student'],
                      gap_closed=methods[best]['gap_closed'], method=best)
    else:
        result['method'] = 'sup'
    result['per_seed'] = {k: per_seed[k] for k in ('sup', 'oracle')}
    result['std'] = {k: mean_std(per_seed[k])[1] for k in ('sup', 'oracle')}
    if best:
        result['per_seed'].update(semi=per_seed[best], semi_student=students[best])
        result['std'].update(semi=methods[best]['semi_std'],
                             semi_student=methods[best]['semi_student_std'])
    result.update(
        oracle_minus_sup=gap, methods=methods,
        stage1={k: dict(mean=mean(v), std=mean_std(v)[1], per_seed=v)
                for k, v in first_stage.items()},
        metric=f'{METRIC}: 3D AP averaged over {list(cfg.metainfo["classes"])}, R40, '
               f'primary={cfg.val_evaluator.get("primary") or "3d/mAP@set0/R40"}',
        iou_thresholds=cfg.val_evaluator['iou_thresholds'],
        batch_size_labeled=cfg.train_dataloader.batch_size,
        runs=runs, machine=f'{platform.processor() or platform.machine()}, '
                           f'{os.cpu_count()} CPUs')

    print(f'\n| run | {METRIC} (mean ± std) | per seed {args.seeds} |')
    print('| --- | --- | --- |')
    for name in names:
        m, sd = mean_std(per_seed[name])
        label = f'{name} (teacher)' if name in students else name
        values = ' / '.join(f'{v:.3f}' for v in per_seed[name])
        print(f'| {label} | {m:.3f} ± {sd:.3f} | {values} |')
        if name in students:
            m, sd = mean_std(students[name])
            print(f'| {name} (student) | {m:.3f} ± {sd:.3f} | '
                  f'{" / ".join(f"{v:.3f}" for v in students[name])} |')
    print(f'\noracle - sup = {gap:.3f}')
    for name, m in methods.items():
        print(f'{name}: gain {m["gain"]:+.3f}, gap closed {m["gap_closed"]:.2f}')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
