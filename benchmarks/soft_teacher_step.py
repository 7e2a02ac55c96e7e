"""Soft Teacher training-step time: ssl_det's SoftTeacher against mmdet's, same maths.

Both are built from one detector config (Faster R-CNN, ResNet-18 FPN with mmdet's default
heads: 256 channels, 512 sampled RoIs per image, 1,000 proposals), start from the same
weights, and are fed the same batches (4 labeled + 4 unlabeled 128-px demo images through
the semi-supervised demo pipelines, weak and strong views). A step is what a training
iteration costs: the loss (teacher pseudo labels, box jittering, background scores,
student losses), backward, an SGD step and the EMA update of the teacher (mmdet's
``MeanTeacherHook.momentum_update`` against ssl_det's fused one).

A teacher trained from scratch would take this script hours, and a randomly initialised one
scores every detection alike (about 1 / (classes + 1)), so that no threshold separates a few
confident boxes from the rest. So the random classifier's weights are scaled up
(``--sharpen``), which spreads the scores, and the thresholds are calibrated once on the
first batch from the teacher's own scores and uncertainties to give realistic counts (by
default about 8 candidates and 4 classification / RPN pseudo boxes per image, half of the
candidates training regression). Both implementations start from these weights and use
these thresholds; the counts are printed and saved.

Each implementation runs in its own process (so that peak memory is its own) and the step
times are medians over ``--steps`` steps after ``--warmup``. Writes
``benchmarks/results/soft_teacher_step.json`` with keys ``ours_s``, ``mmdet_s``, ``ratio``
and ``device``.

    python benchmarks/soft_teacher_step.py [--steps 6] [--warmup 2] [--device cpu|cuda]
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

# ours_mmcv_roialign: ssl_det's SoftTeacher keeping mmcv's RoIAlign (`ours` swaps in
# ssl_det's, as tools/train.py does unless the config says fast_roi_align = False),
# to tell the saving of the algorithm from that of the RoIAlign kernel
IMPLS = ('mmdet', 'ours', 'ours_mmcv_roialign')
NUM_CLASSES = 5


def detector_config():
    """mmdet's Faster R-CNN R50-FPN with a ResNet-18 backbone, no pretrained weights."""
    from mmengine.config import Config
    det = Config.fromfile(_mmdet_config('_base_/models/faster-rcnn_r50_fpn.py')).model
    # mmdet's backbone settings (BN in eval mode, first stage frozen), as a pretrained backbone
    # is trained. It also keeps the comparison exact: mmdet's SoftTeacher, unlike its
    # SemiBaseDetector, never puts the teacher back in eval mode, so with training-mode BN
    # its teacher would predict from batch statistics and the two would see different
    # pseudo labels.
    det.backbone.update(depth=18, init_cfg=None)
    det.neck.in_channels = [64, 128, 256, 512]
    det.roi_head.bbox_head.num_classes = NUM_CLASSES
    det.rpn_head.anchor_generator.scales = [4]  # 10-40 px objects in 128-px images
    return det


def _mmdet_config(path):
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', path)


def semi_cfg(thresholds):
    from mmengine.config import ConfigDict
    return ConfigDict(freeze_teacher=True, sup_weight=1.0, unsup_weight=4.0,
                pseudo_label_initial_score_thr=thresholds['initial'],
                rpn_pseudo_thr=thresholds['rpn'], cls_pseudo_thr=thresholds['cls'],
                reg_pseudo_thr=thresholds['reg'], jitter_times=10, jitter_scale=0.06,
                min_pseudo_bbox_wh=(1e-2, 1e-2))


def build_model(impl, thresholds):
    det = detector_config()
    preprocessor = dict(type='MultiBranchDataPreprocessor',
                        data_preprocessor=det.data_preprocessor)
    if impl == 'mmdet':
        from mmdet.registry import MODELS as MMDET_MODELS
        from mmengine.config import ConfigDict
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmdet'):
            return MMDET_MODELS.build(dict(
                type='SoftTeacher', detector=det, data_preprocessor=preprocessor,
                semi_train_cfg=semi_cfg(thresholds),
                semi_test_cfg=ConfigDict(predict_on='teacher')))
    from ssl_det.ops import replace_roi_align
    from ssl_det.registry import MODELS
    model = MODELS.build(dict(
        type='SoftTeacher', detector=det, data_preprocessor=preprocessor,
        pseudo_label=dict(type='FixedThreshold', score_thr=thresholds['cls']),
        initial_score_thr=thresholds['initial'], rpn_pseudo_thr=thresholds['rpn'],
        reg_pseudo_thr=thresholds['reg'], jitter_times=10, jitter_scale=0.06,
        unsup_weight=4.0, min_pseudo_size=1e-2, log_per_class=False))
    if impl == 'ours':
        replace_roi_align(model)
    return model


def make_batches(data_root, count):
    """``count`` raw batches (4 labeled + 4 unlabeled) from the semi-supervised demo
    pipelines."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from ssl_det.datasets.coco_split import split_coco
    from ssl_det.datasets.demo_data import make_demo_data
    if not osp.exists(osp.join(data_root, 'semi_anns')):
        files = make_demo_data(data_root, num_train=80, num_val=1, seed=7, splits=('train', ))
        split_coco(files['train'], [10], folds=1, out_dir=osp.join(data_root, 'semi_anns'))
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/semi_demo_detection.py'))
    loader = copy.deepcopy(cfg.train_dataloader)
    for dataset in loader.dataset.datasets:
        dataset.data_root = data_root.rstrip('/') + '/'
    loader.update(num_workers=0, persistent_workers=False, batch_size=8)
    loader.sampler.update(batch_size=8, source_ratio=[1, 1], seed=0)
    dataloader = Runner.build_dataloader(loader, seed=0)
    batches, it = [], iter(dataloader)
    while len(batches) < count:
        try:
            batches.append(next(it))
        except StopIteration:  # an epoch is one pass over the labeled images
            it = iter(dataloader)
    return batches


def calibrate(batch, args):
    """Thresholds that give realistic pseudo-label counts for this (untrained) teacher."""
    import torch
    from ssl_det.models.soft_teacher import jitter_box_uncertainty
    model = build_model('ours', dict(initial=0.0, rpn=1.0, cls=1.0, reg=0.0)).to(args.device)
    torch.manual_seed(0)
    model.student.init_weights()
    with torch.no_grad():
        model.student.roi_head.bbox_head.fc_cls.weight.mul_(args.sharpen)
    model.teacher.load_state_dict(model.student.state_dict())
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    inputs, samples = data['inputs']['unsup_teacher'], data['data_samples']['unsup_teacher']
    with torch.no_grad():
        feats = model.teacher.extract_feat(inputs)
        props = model.teacher.rpn_head.predict(feats, samples, rescale=False)
        dets = model.teacher.roi_head.predict(feats, props, samples, rescale=False)
    scores = torch.cat([d.scores for d in dets]).sort(descending=True).values
    images = len(dets)

    def at_rank(per_image):
        return float(scores[min(per_image * images, len(scores)) - 1])

    initial, confident = at_rank(args.candidates), at_rank(args.confident)
    keep = [d.scores >= initial for d in dets]
    uncs = jitter_box_uncertainty(model.teacher.roi_head, feats,
                                  [d.bboxes[k] for d, k in zip(dets, keep)],
                                  [d.labels[k] for d, k in zip(dets, keep)],
                                  [s.metainfo for s in samples], 10, 0.06)
    uncs = torch.cat(uncs)
    reg = float(uncs.median()) if len(uncs) else 0.02
    all_scores = torch.cat([d.scores for d in dets])
    counts = dict(candidates=float((all_scores >= initial).sum()) / images,
                  confident=float((all_scores >= confident).sum()) / images,
                  regression=float((uncs < reg).sum()) / images)
    return dict(initial=initial, cls=confident, rpn=confident, reg=reg), counts, \
        model.student.state_dict()


def run_child(args):
    import torch
    torch.set_num_threads(args.threads)
    import ssl_det  # noqa: F401  (registers ssl_det's modules)
    from mmengine.registry import init_default_scope
    from mmengine.optim import OptimWrapper
    init_default_scope('ssl_det')
    with open(args.child_input) as f:
        setup = json.load(f)
    thresholds = setup['thresholds']
    batches = torch.load(setup['batches'], weights_only=False)
    weights = torch.load(setup['weights'], weights_only=True)
    model = build_model(args.child, thresholds).to(args.device)
    model.student.load_state_dict(weights)
    model.teacher.load_state_dict(weights)
    model.train()
    if args.child == 'mmdet':
        from mmdet.engine.hooks import MeanTeacherHook as MMDetHook
        hook = MMDetHook(momentum=0.001)

        def ema():
            hook.momentum_update(model, 0.001)
    else:
        from ssl_det.engine.hooks import MeanTeacherHook
        hook = MeanTeacherHook(momentum_decay=0.999)

        def ema():
            hook.ema_update(model, 0.999)
    params = [p for p in model.student.parameters() if p.requires_grad]
    optim = OptimWrapper(torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4))
    times, counts = [], []
    sync = torch.cuda.synchronize if args.device == 'cuda' else (lambda: None)
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    for step, batch in enumerate(batches):
        torch.manual_seed(1000 + step)
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        profile = args.profile and step == len(batches) - 1
        if profile:
            profiler = torch.profiler.profile(record_shapes=False)
            profiler.__enter__()
        sync()
        start = time.perf_counter()
        losses = model.loss(data['inputs'], data['data_samples'])
        loss, log_vars = model.parse_losses(losses)
        optim.update_params(loss)
        ema()
        sync()
        times.append(time.perf_counter() - start)
        if profile:
            profiler.__exit__(None, None, None)
            print(f'--- {args.child}: the last step by operator (self time)')
            print(profiler.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))
        if not torch.isfinite(loss):
            raise RuntimeError(f'{args.child}: non-finite loss at step {step}: {log_vars}')
        counts.append(sum(len(s.gt_instances) for s in data['data_samples']['unsup_student']))
    if args.device == 'cuda':
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = times[args.warmup:]
    result = dict(median_s=statistics.median(timed), times_s=[round(t, 4) for t in times],
                  peak_mb=round(peak_mb, 1), cls_pseudo_boxes_per_step=counts)
    with open(args.child_output, 'w') as f:
        json.dump(result, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=6, help='timed steps per implementation')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--candidates', type=int, default=8,
                        help='teacher detections per image above the initial threshold')
    parser.add_argument('--confident', type=int, default=4,
                        help='classification / RPN pseudo boxes per image')
    parser.add_argument('--profile', action='store_true',
                        help='print the last step of each implementation by operator')
    parser.add_argument('--thresholds', choices=['calibrated', 'mmdet'], default='calibrated',
                        help="'mmdet': mmdet's COCO thresholds (0.5/0.9/0.9/0.02), with which "
                             'the random teacher gives no pseudo boxes at all')
    parser.add_argument('--sharpen', type=float, default=30.0,
                        help="scale of the random classifier's weights (spreads the scores)")
    parser.add_argument('--impls', nargs='+', default=list(IMPLS), choices=IMPLS)
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks/results/soft_teacher_step.json'))
    parser.add_argument('--child', choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument('--child-input', help=argparse.SUPPRESS)
    parser.add_argument('--child-output', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)

    import torch
    torch.set_num_threads(args.threads)
    import ssl_det  # noqa: F401
    from mmengine.registry import init_default_scope
    init_default_scope('ssl_det')
    with tempfile.TemporaryDirectory() as tmp:
        batches = make_batches(osp.join(tmp, 'data'), args.warmup + args.steps)
        thresholds, counts, weights = calibrate(batches[0], args)
        if args.thresholds == 'mmdet':  # the COCO config's; a random teacher passes none
            thresholds = dict(initial=0.5, cls=0.9, rpn=0.9, reg=0.02)
        torch.save(batches, osp.join(tmp, 'batches.pth'))
        torch.save(weights, osp.join(tmp, 'weights.pth'))
        with open(osp.join(tmp, 'setup.json'), 'w') as f:
            json.dump(dict(thresholds=thresholds, batches=osp.join(tmp, 'batches.pth'),
                           weights=osp.join(tmp, 'weights.pth')), f)
        print('thresholds:', {k: round(v, 4) for k, v in thresholds.items()})
        if args.thresholds == 'calibrated':
            print('per image on the calibration batch:', counts)
        results = {}
        for impl in args.impls:
            out = osp.join(tmp, f'{impl}.json')
            cmd = [sys.executable, osp.abspath(__file__), '--child', impl, '--child-input',
                   osp.join(tmp, 'setup.json'), '--child-output', out, '--device', args.device,
                   '--threads', str(args.threads), '--warmup', str(args.warmup)]
            cmd += ['--profile'] if args.profile else []
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)
            with open(out) as f:
                results[impl] = json.load(f)
            print(f'{impl}: median {results[impl]["median_s"]:.3f} s/step, '
                  f'steps {results[impl]["times_s"]}')

    device = (torch.cuda.get_device_name() if args.device == 'cuda' else
              f'cpu ({platform.machine()}, {args.threads} threads of {os.cpu_count()} cores)')
    print(f'\nSoft Teacher step on {device}: Faster R-CNN R18-FPN, 128 px, 4 labeled + 4 '
          f'unlabeled, median of {args.steps} steps\n')
    print('| implementation | step (s) | peak memory (MB) | ratio to mmdet |')
    print('| --- | --- | --- | --- |')
    mmdet_s = results.get('mmdet', {}).get('median_s')
    for impl, res in results.items():
        ratio = f'{res["median_s"] / mmdet_s:.2f}' if mmdet_s else '-'
        print(f'| {impl} | {res["median_s"]:.3f} | {res["peak_mb"]:.0f} | {ratio} |')
    ours_s = results.get('ours', {}).get('median_s')
    summary = dict(ours_s=ours_s, mmdet_s=mmdet_s,
                   ratio=ours_s / mmdet_s if ours_s and mmdet_s else None, device=device,
                   steps=args.steps, warmup=args.warmup, threads=args.threads,
                   thresholds=thresholds, threshold_mode=args.thresholds,
                   pseudo_boxes_per_image=counts if args.thresholds == 'calibrated' else None,
                   sharpen=args.sharpen, torch=torch.__version__, details=results)
    if summary['ratio'] is not None:
        print(f'\nratio ours / mmdet = {summary["ratio"]:.2f}')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
