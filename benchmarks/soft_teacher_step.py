"""Soft Teacher training-step time: ssl_det's SoftTeacher against mmdet's, and the floor.

The two compute the same maths. Both are built from one detector config (Faster R-CNN,
ResNet-18 or -50 FPN with mmdet's default heads: 256 channels, 512 sampled RoIs per image,
1,000 proposals), start from the same weights, and are fed the same batches (by default 4
labeled + 4 unlabeled 128-px demo images through the semi-supervised demo pipelines, weak
and strong views; ``--scale`` resizes every view, keeping the ratio, as mmdet's
``Resize(scale=(1333, 800))`` does). A step is what a training iteration costs: the loss
(teacher pseudo labels, box jittering, background scores, student losses), backward, an SGD
step and the EMA update of the teacher (mmdet's ``MeanTeacherHook.momentum_update`` against
ssl_det's fused one).

The floor (impl ``floor``) is the sum of the step's necessary parts, timed on the same
batches and weights: the teacher's forward on the weak views (backbone, RPN and RoI
predictions, no gradients) and the student's plain detector loss, forward and backward, on
the labeled views with their boxes and on the strong views with the teacher's pseudo boxes
(made beforehand, outside the timer), plus the SGD step. It leaves out what Soft Teacher
adds: pseudo-box selection, box jittering, background scores and the EMA.
``ours_over_floor`` says how close ssl_det's step is to it.

A teacher trained from scratch would take this script hours, and a randomly initialised one
scores every detection alike (about 1 / (classes + 1)), so that no threshold separates a few
confident boxes from the rest. So the random classifier's weights are scaled up
(``--sharpen``), which spreads the scores, and the thresholds are calibrated once on the
first batch from the teacher's own scores and uncertainties to give realistic counts (by
default about 8 candidates and 4 classification / RPN pseudo boxes per image, half of the
candidates training regression). Both implementations start from these weights and use
these thresholds; the counts are printed and saved.

``--amp`` runs every implementation's loss under autocast: float16 with mmengine's
``AmpOptimWrapper`` (dynamic loss scaling) on CUDA, bfloat16 with a plain autocast on the CPU
(where mmcv's float32-only RoIAlign gets its inputs cast to float32: see
``mmcv_cpu_roi_align_in_float32``; ssl_det's import does the same for mmcv's NMS).

Each implementation runs in its own process (so that peak memory is its own; ``--quick``
runs them in this process) and the step times are medians over ``--steps`` steps after
``--warmup``. Writes ``benchmarks/results/soft_teacher_step.json`` with keys ``ours_s``,
``mmdet_s``, ``ratio``, ``floor_s``, ``ours_over_floor``, ``device``, ``device_name`` and
``setting`` (depth, scale, labeled, unlabeled, amp).

    python benchmarks/soft_teacher_step.py [--steps 6] [--warmup 2] [--device cpu|cuda]
        [--depth 18|50] [--scale W H] [--labeled 4] [--unlabeled 4] [--amp] [--quick]

The GPU setting of issue #20 (mmdet's COCO Soft Teacher batch):
``--device cuda --depth 50 --scale 1333 800 --labeled 1 --unlabeled 4``.
"""
import argparse
import contextlib
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
import traceback

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

# ours_mmcv_ops: ssl_det's SoftTeacher keeping mmcv's RoIAlign and CPU NMS kernels (`ours`
# swaps in ssl_det's, as tools/train.py does unless the config says fast_roi_align = False
# or fast_nms = False), to tell the saving of the algorithm from that of the kernels. On CUDA
# the two are the same (ssl_det's RoIAlign and NMS hand CUDA tensors to mmcv's kernels), so
# it is left out there. mmdet runs with mmcv's kernels, as its users do.
# floor: the necessary parts alone (module docstring).
IMPLS = ('mmdet', 'ours', 'ours_mmcv_ops', 'floor')
NUM_CLASSES = 5
# Unset options take these values; --quick takes the second set (a dry run of the script in
# seconds on the CPU: one image per source, the 128-px demo images, one timed step).
DEFAULTS = dict(depth=18, labeled=4, unlabeled=4, steps=6, warmup=2)
QUICK = dict(depth=18, labeled=1, unlabeled=1, steps=1, warmup=1)


def detector_config(setting):
    """mmdet's Faster R-CNN R50-FPN with a ResNet-18 or -50 backbone, no pretrained weights."""
    from mmengine.config import Config
    det = Config.fromfile(_mmdet_config('_base_/models/faster-rcnn_r50_fpn.py')).model
    # mmdet's backbone settings (BN in eval mode, first stage frozen), as a pretrained backbone
    # is trained. It also keeps the comparison exact: mmdet's SoftTeacher, unlike its
    # SemiBaseDetector, never puts the teacher back in eval mode, so with training-mode BN
    # its teacher would predict from batch statistics and the two would see different
    # pseudo labels.
    det.backbone.update(depth=setting['depth'], init_cfg=None)
    det.neck.in_channels = ([64, 128, 256, 512] if setting['depth'] in (18, 34) else
                            [256, 512, 1024, 2048])
    det.roi_head.bbox_head.num_classes = NUM_CLASSES
    det.rpn_head.anchor_generator.scales = [setting['anchor_scale']]
    if setting['quick']:  # few proposals and RoIs: a dry run, not a measurement
        det.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
        det.train_cfg.rcnn.sampler.num = 32
        det.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    return det


def anchor_scale(scale):
    """Anchor scale for images resized into ``scale``: 4 for the 10-40 px objects of the
    128-px demo images, mmdet's default 8 once the (square) images are upscaled to 256 px
    or more (at 1333 x 800 they are 800 px: objects of 60-250 px)."""
    return 8 if scale is not None and min(scale) >= 256 else 4


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


def build_model(impl, thresholds, setting):
    from ssl_det.ops import use_fast_cpu_nms
    # process-wide: set for every implementation (--quick builds them all in one process)
    use_fast_cpu_nms(impl in ('ours', 'floor'))
    det = detector_config(setting)
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
    if impl in ('ours', 'floor'):
        replace_roi_align(model)
    return model


def _set_resize_scale(node, scale):
    """Every ``Resize`` of a pipeline config, also inside ``MultiBranch`` branches, to
    ``scale`` (keep_ratio stays as the config has it: True in the demo pipelines)."""
    if isinstance(node, dict):
        if node.get('type') == 'Resize':
            node['scale'] = tuple(scale)
        for value in node.values():
            _set_resize_scale(value, scale)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _set_resize_scale(item, scale)


def make_batches(data_root, count, setting):
    """``count`` raw batches (``labeled`` + ``unlabeled`` images) from the semi-supervised
    demo pipelines, every view resized into ``setting['scale']`` when it is set."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from ssl_det.datasets.coco_split import split_coco
    from ssl_det.datasets.demo_data import make_demo_data
    if not osp.exists(osp.join(data_root, 'semi_anns')):
        files = make_demo_data(data_root, num_train=20 if setting['quick'] else 80, num_val=1,
                               seed=7, splits=('train', ))
        split_coco(files['train'], [10], folds=1, out_dir=osp.join(data_root, 'semi_anns'))
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/semi_demo_detection.py'))
    loader = copy.deepcopy(cfg.train_dataloader)
    for dataset in loader.dataset.datasets:
        dataset.data_root = data_root.rstrip('/') + '/'
        if setting['scale'] is not None:
            _set_resize_scale(dataset.pipeline, setting['scale'])
    batch_size = setting['labeled'] + setting['unlabeled']
    loader.update(num_workers=0, persistent_workers=False, batch_size=batch_size)
    loader.sampler.update(batch_size=batch_size,
                          source_ratio=[setting['labeled'], setting['unlabeled']], seed=0)
    dataloader = Runner.build_dataloader(loader, seed=0)
    batches, it = [], iter(dataloader)
    while len(batches) < count:
        try:
            batches.append(next(it))
        except StopIteration:  # an epoch is one pass over the labeled images
            it = iter(dataloader)
    return batches


def calibrate(batch, args, setting):
    """Thresholds that give realistic pseudo-label counts for this (untrained) teacher."""
    import torch
    from ssl_det.models.soft_teacher import jitter_box_uncertainty
    model = build_model('ours', dict(initial=0.0, rpn=1.0, cls=1.0, reg=0.0),
                        setting).to(args.device)
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
    weights = {k: v.cpu() for k, v in model.student.state_dict().items()}
    input_shape = list(inputs.shape[-2:])
    del model, feats, props, dets, data, inputs
    if args.device == 'cuda':
        torch.cuda.empty_cache()  # the children measure their own peak memory
    return dict(initial=initial, cls=confident, rpn=confident, reg=reg), counts, weights, \
        input_shape


def optimizer_and_autocast(model, args):
    """The SGD wrapper and the context each step's forward runs in: none; with ``--amp``
    float16 autocast and dynamic loss scaling (mmengine's ``AmpOptimWrapper``) on CUDA, or a
    plain bfloat16 autocast on the CPU (``AmpOptimWrapper`` needs CUDA)."""
    import torch
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    params = [p for p in model.student.parameters() if p.requires_grad]
    sgd = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    if not args.amp:
        return OptimWrapper(sgd), contextlib.nullcontext
    if args.device == 'cuda':
        optim = AmpOptimWrapper(optimizer=sgd, dtype='float16', loss_scale='dynamic')
        return optim, lambda: optim.optim_context(model)
    return OptimWrapper(sgd), lambda: torch.autocast('cpu', dtype=torch.bfloat16)


def mmcv_cpu_roi_align_in_float32():
    """mmcv's CPU RoIAlign takes float32 only, and under the CPU's bfloat16 autocast mmdet
    hands it bfloat16 features. With ``--amp`` on the CPU, a dry run of the AMP path rather
    than a measurement, its inputs are cast to float32 for every implementation alike (a
    no-op on float32 inputs; CUDA runs are left alone). mmcv's CPU NMS needs nothing here:
    importing ssl_det routes low-precision CPU boxes through float32
    (``ssl_det.ops.nms.patch_mmcv_cpu_nms``), for mmdet's implementation too."""
    import importlib
    roi_module = importlib.import_module('mmcv.ops.roi_align')
    roi_align = roi_module.roi_align
    if getattr(roi_align, 'float32_inputs', False):
        return

    def roi_align_float32(input, rois, *args):
        return roi_align(input.float(), rois.float(), *args).to(input.dtype)

    roi_align_float32.float32_inputs = True
    roi_module.roi_align = roi_align_float32


def run_child(args):
    import torch
    torch.set_num_threads(args.threads)
    if args.amp and args.device == 'cpu':
        mmcv_cpu_roi_align_in_float32()
    import ssl_det  # noqa: F401  (registers ssl_det's modules)
    from mmengine.registry import init_default_scope
    init_default_scope('ssl_det')
    with open(args.child_input) as f:
        setup = json.load(f)
    thresholds, setting = setup['thresholds'], setup['setting']
    batches = torch.load(setup['batches'], weights_only=False)
    weights = torch.load(setup['weights'], weights_only=True)
    model = build_model(args.child, thresholds, setting).to(args.device)
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
    optim, autocast = optimizer_and_autocast(model, args)
    times, counts, parts = [], [], {'teacher_s': [], 'student_s': []}
    sync = torch.cuda.synchronize if args.device == 'cuda' else (lambda: None)
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    for step, batch in enumerate(batches):
        torch.manual_seed(1000 + step)
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        inputs, samples = data['inputs'], data['data_samples']
        if args.child == 'floor':
            # the strong views' ground truth: the teacher's pseudo boxes (not timed)
            with autocast():
                model.teacher_pseudo_labels(inputs['unsup_teacher'], samples['unsup_teacher'],
                                            samples['unsup_student'])
        profile = args.profile and step == len(batches) - 1
        if profile:
            profiler = torch.profiler.profile(record_shapes=False)
            profiler.__enter__()
        sync()
        start = time.perf_counter()
        if args.child == 'floor':
            with autocast(), torch.no_grad():
                teacher = model.teacher
                feats = teacher.extract_feat(inputs['unsup_teacher'])
                props = teacher.rpn_head.predict(feats, samples['unsup_teacher'],
                                                 rescale=False)
                teacher.roi_head.predict(feats, props, samples['unsup_teacher'], rescale=False)
            sync()
            teacher_done = time.perf_counter()
            with autocast():
                sup, _ = model.parse_losses(model.student.loss(inputs['sup'], samples['sup']))
                unsup, _ = model.parse_losses(
                    model.student.loss(inputs['unsup_student'], samples['unsup_student']))
                loss = sup + model.unsup_weight * unsup
            log_vars = dict(sup_loss=sup.item(), unsup_loss=unsup.item())
            optim.update_params(loss)
            sync()
            parts['teacher_s'].append(teacher_done - start)
            parts['student_s'].append(time.perf_counter() - teacher_done)
        else:
            with autocast():
                losses = model.loss(inputs, samples)
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
        counts.append(sum(len(s.gt_instances) for s in samples['unsup_student']))
    if args.device == 'cuda':
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = times[args.warmup:]
    result = dict(median_s=statistics.median(timed), times_s=[round(t, 4) for t in times],
                  peak_mb=round(peak_mb, 1), cls_pseudo_boxes_per_step=counts,
                  last_loss=loss.item())
    if args.child == 'floor':
        result.update({k: statistics.median(v[args.warmup:]) for k, v in parts.items()})
    with open(args.child_output, 'w') as f:
        json.dump(result, f)


def device_description(device, threads):
    """The GPU's name, or the CPU's model with the threads used."""
    import torch
    if device == 'cuda':
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'cpu ({cpu}, {threads} threads of {os.cpu_count()} cores)'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, help='timed steps per implementation (6)')
    parser.add_argument('--warmup', type=int, help='untimed steps first (2)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--depth', type=int, choices=[18, 50], help='ResNet depth (18)')
    parser.add_argument('--scale', type=int, nargs=2, metavar=('W', 'H'),
                        help='resize every view into W x H, keeping the ratio (mmdet COCO: '
                             '1333 800); default: the 128-px demo images as they are')
    parser.add_argument('--labeled', type=int, help='labeled images per step (4)')
    parser.add_argument('--unlabeled', type=int, help='unlabeled images per step (4)')
    parser.add_argument('--amp', action='store_true',
                        help='autocast: float16 + AmpOptimWrapper on CUDA, bfloat16 on the CPU')
    parser.add_argument('--quick', action='store_true',
                        help='a dry run: 1 + 1 images, 1 step after 1 warm-up, few '
                             'proposals and RoIs, every implementation in this process '
                             '(explicit options still apply)')
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
    parser.add_argument('--impls', nargs='+', choices=IMPLS,
                        help=f'default: all ({", ".join(IMPLS)}), on CUDA without '
                             'ours_mmcv_ops')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks/results/soft_teacher_step.json'))
    parser.add_argument('--child', choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument('--child-input', help=argparse.SUPPRESS)
    parser.add_argument('--child-output', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.impls is None:
        args.impls = [i for i in IMPLS
                      if not (args.device == 'cuda' and i == 'ours_mmcv_ops')]

    import torch
    torch.set_num_threads(args.threads)
    import ssl_det  # noqa: F401
    from mmengine.registry import init_default_scope
    init_default_scope('ssl_det')
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: torch sees no GPU')
    setting = dict(depth=args.depth, scale=args.scale, labeled=args.labeled,
                   unlabeled=args.unlabeled, amp=args.amp,
                   amp_dtype=(None if not args.amp else
                              'float16' if args.device == 'cuda' else 'bfloat16'),
                   anchor_scale=anchor_scale(args.scale), quick=args.quick,
                   mmcv_cpu_roi_align_in_float32=args.amp and args.device == 'cpu')
    failed = {}
    with tempfile.TemporaryDirectory() as tmp:
        batches = make_batches(osp.join(tmp, 'data'), args.warmup + args.steps, setting)
        thresholds, counts, weights, input_shape = calibrate(batches[0], args, setting)
        setting['input_shape'] = input_shape  # (H, W) of the padded weak-view batch
        if args.thresholds == 'mmdet':  # the COCO config's; a random teacher passes none
            thresholds = dict(initial=0.5, cls=0.9, rpn=0.9, reg=0.02)
        torch.save(batches, osp.join(tmp, 'batches.pth'))
        torch.save(weights, osp.join(tmp, 'weights.pth'))
        del batches, weights
        with open(osp.join(tmp, 'setup.json'), 'w') as f:
            json.dump(dict(thresholds=thresholds, setting=setting,
                           batches=osp.join(tmp, 'batches.pth'),
                           weights=osp.join(tmp, 'weights.pth')), f)
        print('setting:', setting)
        print('thresholds:', {k: round(v, 4) for k, v in thresholds.items()})
        if args.thresholds == 'calibrated':
            print('per image on the calibration batch:', counts)
        results = {}
        for impl in args.impls:
            out = osp.join(tmp, f'{impl}.json')
            child = ['--child', impl, '--child-input', osp.join(tmp, 'setup.json'),
                     '--child-output', out, '--device', args.device, '--threads',
                     str(args.threads), '--warmup', str(args.warmup)]
            child += ['--profile'] if args.profile else []
            child += ['--amp'] if args.amp else []
            try:
                if args.quick:  # no process start-up (seconds of imports) per implementation
                    run_child(parser.parse_args(child))
                else:
                    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                    subprocess.run([sys.executable, osp.abspath(__file__)] + child,
                                   check=True, env=env, cwd=ROOT)
            except Exception as exc:  # noqa: BLE001  (the others are still measured)
                traceback.print_exc()
                failed[impl] = f'{type(exc).__name__}: {exc}'[:2000]
                print(f'{impl}: FAILED ({failed[impl][:300]})')
                continue
            with open(out) as f:
                results[impl] = json.load(f)
            print(f'{impl}: median {results[impl]["median_s"]:.3f} s/step, '
                  f'steps {results[impl]["times_s"]}')

    device = device_description(args.device, args.threads)
    size = (f'{args.scale[0]} x {args.scale[1]}' if args.scale else '128 px')
    amp = f', autocast {setting["amp_dtype"]}' if args.amp else ''
    print(f'\nSoft Teacher step on {device}: Faster R-CNN R{args.depth}-FPN, {size}, '
          f'{args.labeled} labeled + {args.unlabeled} unlabeled{amp}, median of '
          f'{args.steps} steps\n')
    print('| implementation | step (s) | peak memory (MB) | ratio to mmdet |')
    print('| --- | --- | --- | --- |')
    mmdet_s = results.get('mmdet', {}).get('median_s')
    for impl, res in results.items():
        ratio = f'{res["median_s"] / mmdet_s:.2f}' if mmdet_s else '-'
        print(f'| {impl} | {res["median_s"]:.3f} | {res["peak_mb"]:.0f} | {ratio} |')
    ours_s = results.get('ours', {}).get('median_s')
    floor_s = results.get('floor', {}).get('median_s')
    summary = dict(ours_s=ours_s, mmdet_s=mmdet_s,
                   ratio=ours_s / mmdet_s if ours_s and mmdet_s else None,
                   floor_s=floor_s,
                   ours_over_floor=ours_s / floor_s if ours_s and floor_s else None,
                   device=device, device_name=device, setting=setting,
                   steps=args.steps, warmup=args.warmup, threads=args.threads,
                   in_process=args.quick, thresholds=thresholds,
                   threshold_mode=args.thresholds,
                   pseudo_boxes_per_image=counts if args.thresholds == 'calibrated' else None,
                   sharpen=args.sharpen, torch=torch.__version__, failed=failed,
                   details=results)
    if summary['ratio'] is not None:
        print(f'\nratio ours / mmdet = {summary["ratio"]:.2f}')
    if summary['ours_over_floor'] is not None:
        print(f'ours / floor = {summary["ours_over_floor"]:.2f} (floor {floor_s:.3f} s: '
              f'teacher {results["floor"]["teacher_s"]:.3f} s + student '
              f'{results["floor"]["student_s"]:.3f} s)')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'wrote {args.out}')
    if failed:
        sys.exit(f'failed: {", ".join(failed)} (the others were written to {args.out})')


if __name__ == '__main__':
    main()
