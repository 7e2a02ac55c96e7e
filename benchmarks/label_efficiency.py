"""Label efficiency of the 2D recipes over several seeds: supervised on a labeled subset vs
semi-supervised vs oracle (100% labels), in the two-stage protocol, on the demo data or on
DeepPCB.

Per seed: stage 1 trains the detector from scratch on the labeled subset (and, for the
oracle, on all labels); stage 2 continues each from its checkpoint for the same iterations
with the same schedule and 4 labeled images per iteration: supervised (``sup``), each
semi-supervised method (teacher ``semi``, student ``semi_student``), each ablation (one
change to a method's config), and the oracle on all labels. The gap closed is
``(semi - sup) / (oracle - sup)``.

    python benchmarks/label_efficiency.py [--dataset demo|deeppcb] [--seeds 0 1 2]
        [--methods mean_teacher ...] [--ablations NAME ...] [--pretrain-iters N] [--iters N]
        [--work-dir DIR] [--reuse]

``--dataset`` selects the protocol table (``benchmarks/protocols/{dataset}.json``: which
config trains each stage) and its data: ``demo`` (the synthetic scenes, generated when
missing) or ``deeppcb`` (real PCB scans from ``--deeppcb-source``, default
``../shared/data/deeppcb``, linked read-only under ``data/deeppcb`` with the protocol's
split, 2% labeled, written beside them).

Runs go to ``{work_dir}/seed{seed}/...``; the default work dir of ``demo`` is the demo's, so
that with ``--reuse`` the runs ``tools/demo.py --seed S`` finished are not trained again.
Writes ``benchmarks/results/label_efficiency.json`` (``_deeppcb.json`` for DeepPCB): the
top-level ``sup``, ``semi``, ``semi_student``, ``oracle`` and ``gap_closed`` are the best
method's means over seeds, with ``per_seed``, ``std`` and every method and ablation under
``methods``.
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
from ssl_det.utils import experiment  # noqa: E402
from tools.demo import ensure_data, ensure_split  # noqa: E402

DATASETS = {
    'demo': dict(protocol='demo.json', work_dir='work_dirs/demo',
                 out='label_efficiency.json'),
    'deeppcb': dict(protocol='deeppcb.json', work_dir='work_dirs/deeppcb',
                    out='label_efficiency_deeppcb.json'),
}
DEEPPCB_SOURCE = osp.join(osp.dirname(ROOT), 'shared', 'data', 'deeppcb')

# A Soft Teacher config ported from mmdet as a user would (issue #19 item 6): mmdet's
# thresholds, unsupervised weight 4, SGD at 0.02 without gradient clipping, the teacher's
# keep-rate 0.999, from the stage-1 checkpoint.
MMDET_PORT = [
    'model.pseudo_label._delete_=True', 'model.pseudo_label.type=FixedThreshold',
    'model.pseudo_label.score_thr=0.9', 'model.initial_score_thr=0.5',
    'model.rpn_pseudo_thr=0.9', 'model.reg_pseudo_thr=0.02', 'model.unsup_weight=4.0',
    'optim_wrapper.clip_grad=None', 'custom_hooks.2.momentum_decay=0.999']


def unlabeled_crops(n: int) -> list:
    """--cfg-options of a DeepPCB stage 2 with the 4 labeled crops and ``n`` unlabeled ones
    (a multiple of 4) an iteration (configs/deeppcb/: 4 until the eighth session, 8 in it,
    12 since the ninth)."""
    batch = 4 + n
    return [f'train_dataloader.batch_size={batch}',
            f'train_dataloader.sampler.batch_size={batch}',
            f'train_dataloader.sampler.source_ratio=[1,{n // 4}]']


UNLABELED_4, UNLABELED_8, UNLABELED_16 = (unlabeled_crops(n) for n in (4, 8, 16))


# the RandomCrop of configs/deeppcb/'s unlabeled pipeline (192 px by default)
UNLABELED_CROP = 'train_dataloader.dataset.datasets.1.pipeline.3.crop_size'


def unlabeled_crop_size(size: int) -> str:
    """The --cfg-option of configs/deeppcb/'s stage 2 that crops the unlabeled scans to
    ``size`` px."""
    return f'{UNLABELED_CROP}=({size},{size})'

# name → (method, extra --cfg-options of its stage-2 run, what changes)
ABLATIONS = {
    'st_unsup_0': ('soft_teacher', ['model.unsup_weight=0.0'],
                   'no unlabeled loss: the teacher is an EMA of a supervised student (what '
                   'weight averaging alone gives)'),
    'mt_unsup_0': ('mean_teacher', ['model.unsup_weight=0.0'],
                   'no unlabeled loss: the teacher is an EMA of a supervised student (what '
                   'weight averaging alone gives)'),
    'mt_fixed_0.9': ('mean_teacher',
                     ['model.pseudo_label._delete_=True', 'model.pseudo_label.type=FixedThreshold',
                      'model.pseudo_label.score_thr=0.9'],
                     "mmdet's fixed 0.9 threshold instead of adaptive dual thresholds"),
    'mt_mmdet_assigner': ('mean_teacher',
                          ['model.ignore_iof_thr=None',
                           'model.detector.train_cfg.rpn.assigner.ignore_iof_thr=0.5',
                           'model.detector.train_cfg.rcnn.assigner.ignore_iof_thr=0.5'],
                          "mmdet's MaxIoUAssigner (ignore_iof_thr 0.5): the band is ignored "
                          'only in images with a confident pseudo box'),
    'mt_ema_0.999': ('mean_teacher', ['custom_hooks.2.momentum_decay=0.999'],
                     'EMA keep-rate 0.999 instead of 0.99'),
    'mt_unsup_2': ('mean_teacher', ['model.unsup_weight=2.0'], 'unsup weight 2 instead of 1'),
    'st_unsup_2': ('soft_teacher', ['model.unsup_weight=2.0'], 'unsup weight 2 instead of 1'),
    'st_high_floor_0.9': ('soft_teacher', ['model.pseudo_label.high_floor=0.9'],
                          "the confident threshold's floor at 0.9 instead of 0.8"),
    'st_no_unsup_reg': ('soft_teacher', ['model.reg_pseudo_thr=0.0'],
                        'no box regression from pseudo boxes (no box passes the jitter '
                        'check): the unlabeled images train classification and the RPN only'),
    # configs/deeppcb/ trains on 12 unlabeled crops an iteration with keep-rate 0.995 since
    # 2026-12-04 (ninth session; 8 since the eighth, 4 and 0.99 before); these undo them
    'st_unlabeled_4': ('soft_teacher', UNLABELED_4,
                       '4 unlabeled images per iteration instead of 12 (the labeled 4 '
                       'unchanged)'),
    'st_unlabeled_8': ('soft_teacher', UNLABELED_8,
                       '8 unlabeled images per iteration instead of 12 (the labeled 4 '
                       'unchanged; the default of the eighth session)'),
    'st_unlabeled_8_ema_0.99': ('soft_teacher',
                                UNLABELED_8 + ['custom_hooks.2.momentum_decay=0.99'],
                                '8 unlabeled images per iteration, keep-rate 0.99'),
    'st_unlabeled_8_ema_0.998': ('soft_teacher',
                                 UNLABELED_8 + ['custom_hooks.2.momentum_decay=0.998'],
                                 '8 unlabeled images per iteration, keep-rate 0.998'),
    'st_ema_0.99': ('soft_teacher', ['custom_hooks.2.momentum_decay=0.99'],
                    "the teacher's keep-rate 0.99 instead of 0.995"),
    'st_ema_0.998': ('soft_teacher', ['custom_hooks.2.momentum_decay=0.998'],
                     "the teacher's keep-rate 0.998 instead of 0.995"),
    'st_unlabeled_16': ('soft_teacher', UNLABELED_16,
                        "16 unlabeled images per iteration instead of 12 (mmdet's 1:4; the "
                        'labeled 4 unchanged)'),
    'st_unlabeled_4_ema_0.99': ('soft_teacher',
                                UNLABELED_4 + ['custom_hooks.2.momentum_decay=0.99'],
                                "configs/deeppcb/'s Soft Teacher before 2026-12-04: 4 "
                                'unlabeled images per iteration, keep-rate 0.99'),
    'st_rpn_thr_0.8': ('soft_teacher', ['model.rpn_pseudo_thr=0.8'],
                       "the RPN learns every confident box (rpn_pseudo_thr 0.8, the confident "
                       "threshold's floor) instead of those above 0.9"),
    'st_share_cap': ('soft_teacher', ['model.pseudo_label.share_cap=1.0'],
                     "a class's share of the confident boxes capped at its share of the "
                     'labeled boxes (DynamicThreshold share_cap=1)'),
    'st_share_floor': ('soft_teacher', ['model.pseudo_label.share_floor=1.0',
                                        'model.pseudo_label.share_floor_thr=0.6'],
                       "a class's confident threshold lowered (to 0.6 at most) until its share "
                       'of the confident boxes reaches its share of the labeled boxes '
                       '(DynamicThreshold share_floor=1, share_floor_thr=0.6)'),
    'st_count_cap': ('soft_teacher', ['model.pseudo_label.count_cap=1.0'],
                     'confident boxes per unlabeled image capped per class at the labeled '
                     "images' boxes per image (DynamicThreshold count_cap=1)"),
    'st_mmdet': ('soft_teacher',
                 ['model.pseudo_label._delete_=True', 'model.pseudo_label.type=FixedThreshold',
                  'model.pseudo_label.score_thr=0.9', 'model.initial_score_thr=0.5',
                  'model.rpn_pseudo_thr=0.9', 'model.reg_pseudo_thr=0.02'],
                 "Soft Teacher with mmdet's COCO thresholds (0.9 / 0.5 / 0.9 / 0.02)"),
    'st_mmdet_user': ('soft_teacher', MMDET_PORT,
        "Soft Teacher ported from mmdet: its thresholds (0.9 / 0.5 / 0.9 / 0.02), unsup "
        "weight 4, no gradient clipping, keep-rate 0.999 (which MeanTeacherHook's max_lag "
        'lowers to 0.99 in a 1,000-iteration stage 2)'),
    # ssl_det's default before 2026-12-03: the time constant allowed a quarter of the run.
    'st_mmdet_user_lag025': ('soft_teacher', MMDET_PORT + ['custom_hooks.2.max_lag=0.25'],
                             "st_mmdet_user with the teacher's time constant allowed a "
                             'quarter of the unlabeled iterations (0.999 -> 0.996 here) '
                             'instead of a tenth (0.99)'),
    # The same without the guards against its failure (MeanTeacherHook's ramp and max_lag,
    # the gradient spike guard, the labeled-loss guard).
    'st_mmdet_user_unguarded': ('soft_teacher', MMDET_PORT + [
        'custom_hooks.2.ramp=always', 'custom_hooks.2.max_lag=None',
        'optim_wrapper.spike_ratio=None', 'model.sup_loss_guard=None'],
        "st_mmdet_user without the guards against its failure: the teacher's keep-rate "
        'ramps from the copy and may lag the whole run, no gradient spike is skipped, no '
        'labeled-loss guard (ssl_det before issue #19 item 6)'),
    'st_mixpl': ('soft_teacher', ['model.mixing.cache_size=8'],
                 'mixed pseudo labels (MixPL): once the cache is full the student learns on a '
                 'Mixup batch of its strong views with cached ones, in place of the strong '
                 "views' loss, and on a Mosaic of 4 cached views"),
    'st_mixpl_add': ('soft_teacher', ['model.mixing.cache_size=8',
                                      'model.mixing.replace_strong=False'],
                     "st_mixpl with the mixed batches added to the strong views' loss "
                     '(their RoI regression left to the jitter-checked boxes)'),
    'st_views_hv': ('soft_teacher', ['model.teacher_views=[horizontal,vertical]'],
                    'teacher views: the teacher also labels each weak crop flipped '
                    'horizontally and vertically, its boxes flipped back and fused with the '
                    "weak view's (score summed over the 3 views)"),
    'st_views_hv_unlabeled_8': ('soft_teacher',
                                UNLABELED_8 + ['model.teacher_views=[horizontal,vertical]'],
                                'st_views_hv with 8 unlabeled crops per iteration instead of '
                                '12 (the labeled 4 unchanged)'),
    'st_unlabeled_16_crop160': ('soft_teacher', UNLABELED_16 + [unlabeled_crop_size(160)],
        '16 unlabeled crops of 160 px per iteration instead of 12 of 192 (as many pixels: '
        'more images at the same cost)'),
    'st_unlabeled_4_whole': ('soft_teacher', UNLABELED_4 + [unlabeled_crop_size(320)],
        '4 whole unlabeled scans (320 px, uncropped) per iteration instead of 12 crops of '
        '192 px (about as many pixels: fewer, whole images)'),
    'st_soft_negatives': ('soft_teacher', ['model.soft_negatives=True'],
                          "each background sample learns the teacher's class distribution "
                          'on it (soft cross-entropy) instead of the background label '
                          "weighted by the teacher's background score"),
    'st_no_unsup_rpn': ('soft_teacher', ['model.unsup_loss_keys=[loss_cls,loss_bbox]'],
                        'the RPN learns from the labeled crops only: no RPN loss on pseudo '
                        "boxes (whose missed objects it would learn as background)"),
    'st_gmm': ('soft_teacher', ['model.pseudo_label.type=GMMThreshold'],
               "Consistent-Teacher's per-class GMM thresholds instead of DynamicThreshold's "
               '(same bounds, window and min_count)'),
    'st_bg_power': ('soft_teacher', ['model.background_power=8.0'],
                    "the teacher's background scores to the power 8 as background weights: "
                    'proposals the teacher doubts are background (where the objects it '
                    'missed lie) weigh little'),
    # configs/deeppcb/ ignores them since 2026-12-03 (seventh session)
    'st_rpn_background': ('soft_teacher', ['model.rpn_ignore_unconfident=False'],
                          "the classification pseudo boxes under the RPN's threshold are "
                          "background to the RPN (mmdet's Soft Teacher) instead of ignored"),
    'st_wide_band': ('soft_teacher', ['model.pseudo_label.init_low=0.1',
                                      'model.pseudo_label.low_floor=0.05',
                                      'model.pseudo_label.low_ceil=0.3'],
                     'a wide ignored band: detections from 0.1 (floor 0.05, ceiling 0.3) to '
                     'the confident threshold are neither foreground nor background'),
    'st_strong_bn': ('soft_teacher', ['model.strong_bn_stats=True'],
                     "the strong views also update the student's BatchNorm running statistics "
                     '(ssl_det before 2026-12-03)'),
    'st_strict': ('soft_teacher',
                  ['model.pseudo_label.init_high=0.9', 'model.pseudo_label.high_floor=0.8',
                   'model.pseudo_label.high_ceil=0.95', 'model.pseudo_label.init_low=0.5',
                   'model.pseudo_label.low_floor=0.3', 'model.pseudo_label.low_ceil=0.7',
                   'model.initial_score_thr=0.5', 'model.rpn_pseudo_thr=0.9'],
                  'thresholds held high: adaptive confident from 0.9 (floor 0.8), ignored band '
                  "from 0.5 (floor 0.3), mmdet's initial (0.5) and RPN (0.9) thresholds"),
}
# Ablations without stage 1: the run starts from scratch (no burn-in) and trains as many
# iterations as stage 1 + stage 2, with stage 2's LR step at the same iteration.
FROM_SCRATCH = {
    'st_mmdet_scratch': ('soft_teacher', ABLATIONS['st_mmdet'][1],
                         "Soft Teacher with mmdet's COCO thresholds, from scratch: no stage 1, "
                         'the teacher starts untrained'),
}
ABLATIONS.update(FROM_SCRATCH)
# Ablations that name a step of configs/deeppcb/'s pipelines (the unlabeled crop)
DEEPPCB_ONLY = {name for name, (_, opts, _) in ABLATIONS.items()
                if any(o.startswith(UNLABELED_CROP + '=') for o in opts)}
KEYS = ('sup', 'semi', 'semi_student', 'oracle', 'gap_closed', 'gain')


def ensure_deeppcb(data_root: str, source: str, percent: float) -> None:
    """Link DeepPCB's read-only ``images/`` and ``annotations/`` under ``data_root`` and
    write its labeled / unlabeled split (fold 1, ``percent``%) to ``data_root/semi_anns``."""
    for name in ('images', 'annotations'):
        link, target = osp.join(data_root, name), osp.join(osp.abspath(source), name)
        if not osp.exists(link):
            if not osp.isdir(target):
                sys.exit(f'label_efficiency: error: no DeepPCB at {source} ({target} is '
                         'missing); pass --deeppcb-source (see data/README.md)')
            os.makedirs(data_root, exist_ok=True)
            os.symlink(target, link)
    ensure_split(data_root, percent)


def scratch_options(protocol, pretrain_iters, iters):
    """``--cfg-options`` of a stage-2 config that make it one run from scratch as long as
    stage 1 + stage 2, with the LR step where stage 2 has it."""
    from mmengine.config import Config
    root = protocol['root']
    labels = protocol['stage2']['sup'][0]
    pretrain_iters = pretrain_iters or Config.fromfile(
        osp.join(root, protocol['pretrain'][labels])).train_cfg.max_iters
    iters = iters or Config.fromfile(
        osp.join(root, protocol['stage2']['sup'][1])).train_cfg.max_iters
    total = pretrain_iters + iters
    return experiment.iteration_options(total)[:-1] + [
        f'param_scheduler.1.milestones=[{pretrain_iters + int(iters * 0.75)}]', 'load_from=None']


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(per_seed: dict) -> dict:
    """Means (``gap_closed`` from the means), standard deviations over seeds, per seed."""
    means = {k: mean_std(v)[0] for k, v in per_seed.items()}
    gap = means['oracle'] - means['sup']
    means['gap_closed'] = (means['semi'] - means['sup']) / gap if gap > 0 else None
    std = {k: mean_std(v)[1] for k, v in per_seed.items()}
    return dict(means, per_seed=per_seed, std=std)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', choices=sorted(DATASETS), default='demo',
                        help='the protocol table and data: benchmarks/protocols/DATASET.json')
    parser.add_argument('--deeppcb-source', default=DEEPPCB_SOURCE,
                        help='the DeepPCB folder (images/, annotations/), read-only')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--methods', nargs='+', default=['mean_teacher'],
                        choices=['mean_teacher', 'soft_teacher'])
    parser.add_argument('--ablations', nargs='*', default=[], choices=sorted(ABLATIONS))
    parser.add_argument('--pretrain-iters', type=int, help="override stage 1's iterations")
    parser.add_argument('--iters', type=int, help="override stage 2's iterations")
    parser.add_argument('--work-dir', help="default: work_dirs/demo or work_dirs/deeppcb")
    parser.add_argument('--reuse', action='store_true',
                        help='reuse finished runs of the same seed and options')
    parser.add_argument('--out', help='default: benchmarks/results/label_efficiency.json '
                                      '(label_efficiency_deeppcb.json for DeepPCB)')
    args = parser.parse_args(argv)
    if args.dataset != 'deeppcb' and DEEPPCB_ONLY & set(args.ablations):
        parser.error(f'{sorted(DEEPPCB_ONLY & set(args.ablations))} change a step of '
                     "configs/deeppcb/'s pipelines: --dataset deeppcb only")
    dataset = DATASETS[args.dataset]
    protocol = experiment.load_protocol(osp.join(ROOT, 'benchmarks', 'protocols',
                                                 dataset['protocol']))
    args.work_dir = args.work_dir or dataset['work_dir']
    args.out = args.out or osp.join(ROOT, 'benchmarks', 'results', dataset['out'])
    if args.dataset == 'deeppcb':
        ensure_deeppcb(osp.join(ROOT, protocol['data']), args.deeppcb_source,
                       protocol['labeled_percent'])
    else:
        ensure_data(osp.join(ROOT, protocol['data']))
    names = list(args.methods) + list(args.ablations)
    runs = ['sup', 'oracle'] + list(args.methods) + \
        [f'{a}={ABLATIONS[a][0]}' for a in args.ablations]
    options = {a: list(ABLATIONS[a][1]) for a in args.ablations}
    for name in set(args.ablations) & set(FROM_SCRATCH):
        options[name] += scratch_options(protocol, args.pretrain_iters, args.iters)
    per_seed = {name: {k: [] for k in KEYS if k != 'gap_closed'} | {'gap_closed': []}
                for name in names}
    minutes = {}
    for seed in args.seeds:
        results = experiment.two_stage(protocol, runs, seed, args.work_dir,
                                       args.pretrain_iters, args.iters, options,
                                       reuse=args.reuse)
        sup = experiment.bbox_map(results['sup']['metrics'])
        oracle = experiment.bbox_map(results['oracle']['metrics'])
        for name in names:
            metrics = results[name]['metrics']
            semi = experiment.bbox_map(metrics, 'teacher')
            row = dict(sup=sup, oracle=oracle, semi=semi,
                       semi_student=experiment.bbox_map(metrics, 'student'), gain=semi - sup,
                       gap_closed=(semi - sup) / (oracle - sup) if oracle > sup else None)
            for key, value in row.items():
                per_seed[name][key].append(value)
        minutes[f'seed{seed}'] = {k: None if r['seconds'] is None else round(r['seconds'] / 60, 1)
                                  for k, r in results.items()}

    methods = {}
    for name in names:
        summary = summarise(per_seed[name])
        method, opts, what = ABLATIONS[name] if name in ABLATIONS else (name, [], 'default')
        methods[name] = dict(summary, method=method, options=opts, change=what)
    best = max(args.methods, key=lambda n: methods[n]['gap_closed'] or float('-inf'))
    top = methods[best]
    result = {k: top[k] for k in ('sup', 'semi', 'semi_student', 'oracle', 'gap_closed')}
    result.update(per_seed=top['per_seed'], std=top['std'], seeds=args.seeds, method=best,
                  methods=methods, dataset=args.dataset,
                  protocol=dict(table=f'benchmarks/protocols/{dataset["protocol"]}',
                                pretrain_iters=args.pretrain_iters or 'config',
                                iters=args.iters or 'config',
                                stage1=protocol['pretrain'],
                                stage2={k: v[1] for k, v in protocol['stage2'].items()}),
                  device='cpu', machine=f'{platform.machine()} {os.cpu_count()} cores',
                  minutes=minutes)

    def fmt(name, key):
        m, s = methods[name][key], methods[name]['std'][key]
        seeds = ' / '.join('n/a' if v is None else f'{v:.3f}'
                           for v in methods[name]['per_seed'][key])
        return f'{m:.3f} ± {s:.3f} | {seeds}' if m is not None else f'n/a | {seeds}'

    print(f'\nseeds {args.seeds}; mean ± std over seeds | per seed\n')
    print('| run | bbox mAP | per seed |\n| --- | --- | --- |')
    print(f"| supervised, labeled subset only | {fmt(best, 'sup')} |")
    for name in names:
        print(f'| {name} teacher | {fmt(name, "semi")} |')
        print(f'| {name} student | {fmt(name, "semi_student")} |')
    print(f'| oracle, 100% labels | {fmt(best, "oracle")} |')
    print('\n| method | change | gain over sup (teacher) | gap closed (from means) | '
          'gap closed per seed |\n| --- | --- | --- | --- | --- |')
    for name in names:
        m = methods[name]
        closed = 'n/a' if m['gap_closed'] is None else f'{m["gap_closed"]:.2f}'
        per = ' / '.join('n/a' if v is None else f'{v:.2f}' for v in m['per_seed']['gap_closed'])
        print(f'| {name} | {m["change"]} | {m["gain"]:+.3f} ± {m["std"]["gain"]:.3f} | '
              f'{closed} | {per} |')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
