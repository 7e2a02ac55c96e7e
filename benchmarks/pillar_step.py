"""Where a PillarDetector training step spends its time on the 3D demo scenes, and what the
metric costs, on this machine.

    python benchmarks/pillar_step.py [--config CFG] [--batches 10] [--out FILE]

Per training step (batch of the config, real demo frames through the config's train
pipeline): voxelization, pillar features + scatter, BEV backbone + neck, head + loss,
backward + optimizer step; each part's share of the step. The pillar front end is compared
in the same run with the peer layout (mmdet3d's PointPillars: mmcv's hard ``Voxelization``
with up to 32 points per pillar, padded, then the same per-point layer and a max over the
padded slots), forward + backward. The metric: ``Box3DAPMetric.compute_metrics`` over the
val set with the predictions of ``--checkpoint`` (trained weights; up to 50 boxes a frame).

``--semi`` (issue #20's 3D step target) times, on KITTI-scale frames generated in a temporary
folder (about 20k points and 15-30 boxes each), one training step of the supervised stage-2
config on ``--frames`` labeled frames against one step of the 3D demo's semi-supervised
config (HSSDA, ``TeacherStudent3D``) on the same frames as labeled scenes plus the same
frames through the unlabeled pipeline (weak and strong views): loss, backward, optimizer
step and, for the semi-supervised step, the EMA update. Both start from one detector that
``--pretrain-steps`` supervised steps (or ``--checkpoint``) trained, so that the teacher
predicts realistic tiers. The semi-supervised step is broken into its parts (teacher
prediction, pseudo-label tiers, student losses, backward). ``semi_over_sup`` is the ratio of
the medians. With ``--semi`` the JSON gets a ``semi`` section and a top-level
``semi_over_sup``; the demo-scale part is kept from the existing file.

Writes ``benchmarks/results/pillar_step.json``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def padded_front_end(points, voxel_size, pcr, linear, norm, max_points=32,
                     max_voxels=16000):
    """The peer: mmcv hard voxelization + padded PointPillars feature net (forward)."""
    from mmcv.ops import Voxelization
    layer = Voxelization(voxel_size, pcr, max_points, max_voxels)
    feats_all = []
    for pts in points:
        voxels, coors, num = layer(pts)
        mask = (torch.arange(max_points)[None] < num[:, None]).unsqueeze(-1).float()
        mean = (voxels[..., :3] * mask).sum(1, keepdim=True) / num.clamp(min=1).view(-1, 1, 1)
        centre = torch.stack([coors[:, 2].float() * voxel_size[0] + voxel_size[0] / 2 + pcr[0],
                              coors[:, 1].float() * voxel_size[1] + voxel_size[1] / 2 + pcr[1]],
                             1)
        f = torch.cat([voxels, voxels[..., :3] - mean, voxels[..., :2] - centre[:, None]], -1)
        x = norm(linear(f * mask).flatten(0, 1)).view(len(f), max_points, -1).relu()
        feats_all.append(x.masked_fill(mask == 0, float('-inf')).amax(1))
    return torch.cat(feats_all)


SUP_CONFIG = 'configs/point_cloud/pillar-center_demo3d_sup-10pct_stage2.py'
SEMI_CONFIG = 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py'
# KITTI scale: a 64-beam sensor's ~20k points in the front range and 15-30 objects a frame
KITTI_SCALE = dict(azimuth_step_deg=0.25, num_beams=48, min_objects=15, max_objects=30)


def unique_pillar_index(coors):
    """``PillarFeatureNet.pillar_index`` as it was: ``torch.unique`` of packed cell keys
    (the 'before' of the comparison; the tests check that both give the same ids)."""
    key = coors[:, 0].long() << 40 | coors[:, 2].long() << 20 | coors[:, 3].long()
    uniq, inverse = torch.unique(key, return_inverse=True)
    return inverse, len(uniq)


class PartTimer:
    """Wraps methods of objects so that each call's wall time adds to a named part."""

    def __init__(self, sync):
        self.sync, self.totals = sync, {}

    def wrap(self, obj, name, part):
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self.sync()
            self.totals[part] = self.totals.get(part, 0.0) + time.perf_counter() - start
            return out
        setattr(obj, name, timed)

    def pop(self):
        totals, self.totals = self.totals, {}
        return totals


def semi_over_sup(args):
    """The semi-supervised 3D step against the supervised one on the same KITTI-scale
    frames (see the module doc)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix='pillar_step_') as tmp:  # the scenes, removed after
        return _semi_over_sup(args, tmp)


def _semi_over_sup(args, tmp):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import ssl_det  # noqa: F401
    from mmengine.dataset import pseudo_collate

    from ssl_det.datasets.collate_3d import point_cloud_collate
    from ssl_det.datasets.demo_data_3d import make_demo_data_3d
    from ssl_det.engine.hooks import MeanTeacherHook
    from ssl_det.registry import DATASETS, MODELS
    init_default_scope('ssl_det')
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    frames, steps = args.frames, args.semi_steps
    num = max(frames, 16)
    files = make_demo_data_3d(tmp, num_train=num, num_val=0, seed=3, labeled_percent=None,
                              splits=('train',), verbose=False, **KITTI_SCALE)
    root = tmp.rstrip('/') + '/'
    sup_cfg = Config.fromfile(osp.join(ROOT, SUP_CONFIG))
    semi_cfg = Config.fromfile(osp.join(ROOT, SEMI_CONFIG))
    ann = osp.relpath(files['train'], tmp)
    sup_set = DATASETS.build(dict(sup_cfg.train_dataloader.dataset, data_root=root,
                                  ann_file=ann))
    lab_cfg, unlab_cfg = semi_cfg.train_dataloader.dataset.datasets
    semi_lab = DATASETS.build(dict(lab_cfg, data_root=root, ann_file=ann))
    semi_unlab = DATASETS.build(dict(unlab_cfg, data_root=root, ann_file=ann))

    torch.manual_seed(0)
    sup_model = MODELS.build(sup_cfg.model).to(device)  # PyTorch's initialisation
    sup_model.train()
    # a detector that predicts: the checkpoint, or a short supervised training here
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(sup_model, args.checkpoint, map_location='cpu')
    else:
        optim = torch.optim.AdamW(sup_model.parameters(), lr=2e-3)
        for step in range(args.pretrain_steps):
            idx = [(step * frames + j) % num for j in range(frames)]
            data = sup_model.data_preprocessor(pseudo_collate([sup_set[i] for i in idx]), True)
            loss = sum(sup_model.loss(data['inputs'], data['data_samples']).values())
            optim.zero_grad()
            loss.backward()
            optim.step()
    weights = {k: v.clone() for k, v in sup_model.state_dict().items()}
    semi_model = MODELS.build(semi_cfg.model).to(device)
    semi_model.student.load_state_dict(weights)
    semi_model.teacher.load_state_dict(weights)
    semi_model.train()
    sup_optim = build_optim_wrapper(sup_model, sup_cfg.optim_wrapper)
    semi_optim = build_optim_wrapper(semi_model, semi_cfg.optim_wrapper)
    hook = MeanTeacherHook(momentum_decay=0.999)

    timer = PartTimer(sync)
    timer.wrap(semi_model, 'teacher_predict', 'teacher predict')
    timer.wrap(semi_model, 'pseudo_instances', 'pseudo labels (with teacher predict)')
    timer.wrap(semi_model.student, 'loss', 'student losses (forward)')
    timer.wrap(semi_model.student, 'loss_parts', 'student losses (forward)')
    timer.wrap(sup_model, 'loss', 'student losses (forward)')

    def run(model, optim, batch, ema):
        data = model.data_preprocessor(batch, True)
        sync()
        start = time.perf_counter()
        losses = model.loss(data['inputs'], data['data_samples'])
        loss, _ = model.parse_losses(losses)
        if not torch.isfinite(loss):
            raise RuntimeError(f'non-finite loss: {losses}')
        t_fwd = time.perf_counter() - start
        optim.update_params(loss)
        if ema:
            hook.ema_update(model, 0.999)
        sync()
        total = time.perf_counter() - start
        parts = timer.pop()
        parts['loss (forward)'] = t_fwd
        parts['step'] = total
        return parts

    # 'before': the head's targets one box at a time (mmdet's gen_gaussian_target per box,
    # CenterHead3D.get_targets_loop), the pillars found by torch.unique (a sort), an NCHW
    # canvas and the teacher's box code over the whole map; 'after': the vectorised
    # targets, the dense-grid pillar index, the channels-last canvas and the code at the
    # peaks only (CenterHead3D.reg_at); 'joint': 'after' with the student's labeled and
    # strong scenes in one pass (TeacherStudent3D(joint_batch=True)). Same models, same
    # batches, alternating within each step.
    detectors = [sup_model, semi_model.student, semi_model.teacher]

    def use(variant):
        semi_model.joint_batch = variant == 'joint'
        for det in detectors:
            head, enc = det.bbox_head, det.voxel_encoder
            det.middle_encoder.channels_last = variant != 'before'
            if variant == 'before':
                head.get_targets = head.get_targets_loop
                head.reg_at = head.reg_at_full_map  # the code over the whole map
                enc.pillar_index = unique_pillar_index
            else:
                for name in ('get_targets', 'reg_at'):
                    head.__dict__.pop(name, None)
                enc.__dict__.pop('pillar_index', None)

    variants = ('before', 'after', 'joint')
    records = {v: dict(sup=[], semi=[]) for v in variants}
    tiers = []
    for step in range(args.warmup + steps):
        idx = [(step * frames + j) % num for j in range(frames)]
        sup_batch = pseudo_collate([sup_set[i] for i in idx])
        semi_batch = point_cloud_collate([semi_lab[i] for i in idx] +
                                         [semi_unlab[i] for i in idx])
        for variant in variants:
            use(variant)
            sup_parts = run(sup_model, sup_optim, copy.deepcopy(sup_batch), ema=False)
            profile = args.profile and variant == 'after' and step == args.warmup + steps - 1
            if profile:
                import cProfile
                import pstats
                profiler = cProfile.Profile()
                profiler.enable()
            semi_parts = run(semi_model, semi_optim, copy.deepcopy(semi_batch), ema=True)
            if profile:
                profiler.disable()
                print(f'--- the last semi-supervised step (after), by {args.profile_sort}')
                pstats.Stats(profiler).sort_stats(args.profile_sort).print_stats(args.profile_filter, 30)
            if step >= args.warmup:
                records[variant]['sup'].append(sup_parts)
                records[variant]['semi'].append(semi_parts)
        pseudo = semi_model.latest_pseudo['data_samples'] if semi_model.latest_pseudo else []
        tiers.append(dict(
            high_and_middle=sum(len(s.gt_instances_3d) for s in pseudo) / frames,
            ignored=sum(len(s.ignored_instances_3d) for s in pseudo) / frames))
    use('after')
    packed = [semi_lab[i] for i in range(frames)]
    points = [len(p['inputs']['sup']['points']) for p in packed]
    boxes = [len(p['data_samples']['sup'].gt_instances_3d) for p in packed]

    def summary(variant):
        def median(kind, key):
            return statistics.median(r.get(key, 0.0) for r in records[variant][kind])

        sup_s, semi_s = median('sup', 'step'), median('semi', 'step')
        teacher = median('semi', 'teacher predict')
        pseudo_total = median('semi', 'pseudo labels (with teacher predict)')
        # what a semi-supervised step cannot do without: the student's step on twice the
        # frames (labeled + strong views, about two supervised steps) and a teacher pass
        floor = 2 * sup_s + teacher
        # each step's pair (the semi-supervised step right after the supervised one):
        # less exposed to the machine's drift than the ratio of the medians
        paired = statistics.median(b['step'] / a['step'] for a, b in
                                   zip(records[variant]['sup'], records[variant]['semi']))
        return dict(
            sup_step_s=sup_s, semi_step_s=semi_s, semi_over_sup=semi_s / sup_s,
            semi_over_sup_paired=paired,
            floor_s=floor, floor_over_sup=floor / sup_s, semi_over_floor=semi_s / floor,
            sup_parts={'loss (forward)': median('sup', 'loss (forward)'),
                       'backward + optimizer step': sup_s - median('sup', 'loss (forward)')},
            semi_parts={
                'teacher predict': teacher,
                'pseudo-label tiers (after predict)': pseudo_total - teacher,
                'student losses, labeled + strong (forward)':
                    median('semi', 'student losses (forward)'),
                'backward + optimizer step + EMA': semi_s - median('semi', 'loss (forward)')},
            step_times_s=dict(sup=[round(r['step'], 4) for r in records[variant]['sup']],
                              semi=[round(r['step'], 4) for r in records[variant]['semi']]))

    results = {v: summary(v) for v in variants}
    print(f'\nKITTI-scale frames: {frames} a batch, points in range per frame '
          f'{min(points)}-{max(points)}, boxes {min(boxes)}-{max(boxes)}; median of {steps} '
          f'steps on {args.device}')
    print('| step | part | before (s) | after (s) | after, joint batch (s) |')
    print('| --- | --- | --- | --- | --- |')
    before, after = results['before'], results['after']

    def cells(key, fmt='.4f', part=None):
        return ' | '.join(format(results[v][key] if part is None else results[v][key][part],
                                 fmt) for v in variants)
    for kind, label in (('sup', f'supervised ({frames} labeled)'),
                        ('semi', f'semi-supervised ({frames} + {frames})')):
        for name in after[f'{kind}_parts']:
            print(f'| {label} | {name} | {cells(f"{kind}_parts", part=name)} |')
        print(f'| **{label}** | **step** | {cells(f"{kind}_step_s")} |')
    print(f'| | **semi / sup** | {cells("semi_over_sup", ".2f")} |')
    print(f'| | semi / sup, median of the steps\' pairs | {cells("semi_over_sup_paired", ".2f")} |')
    print(f'| | floor (2 supervised steps + teacher predict) / sup | '
          f'{cells("floor_over_sup", ".2f")} |')
    print(f'| | semi / floor | {cells("semi_over_floor", ".2f")} |')
    return dict(after, before=before, joint_batch=results['joint'], frames=frames, steps=steps,
                warmup=args.warmup, device=args.device,
                device_name=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                             else platform.processor() or platform.machine()),
                threads=torch.get_num_threads(),
                points_per_frame=[min(points), max(points)],
                boxes_per_frame=[min(boxes), max(boxes)], pseudo_per_frame=tiers,
                pretrain_steps=None if args.checkpoint else args.pretrain_steps,
                sup_config=SUP_CONFIG, semi_config=SEMI_CONFIG)

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/point_cloud/pillar-center_demo3d_sup-all.py')
    parser.add_argument('--batches', type=int, default=10)
    parser.add_argument('--checkpoint', default=None,
                        help='weights for the metric part (a trained model predicts realistic '
                             'boxes; an untrained one predicts almost none)')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'pillar_step.json'))
    parser.add_argument('--semi', action='store_true',
                        help='time the semi-supervised step against the supervised one on '
                             'KITTI-scale frames (only this part)')
    parser.add_argument('--frames', type=int, default=4, help='--semi: labeled frames a batch '
                        '(and as many unlabeled)')
    parser.add_argument('--semi-steps', type=int, default=8, help='--semi: timed steps')
    parser.add_argument('--warmup', type=int, default=2, help='--semi: untimed steps first')
    parser.add_argument('--pretrain-steps', type=int, default=150,
                        help='--semi: supervised steps that train the shared starting '
                             'detector (without --checkpoint)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--profile', action='store_true',
                        help='--semi: print a profile of the last semi-supervised step')
    parser.add_argument('--profile-sort', default='tottime', help='cProfile sort key')
    parser.add_argument('--profile-filter', default='', help='regex on the functions shown')
    parser.add_argument('--quick', action='store_true',
                        help='--semi: a dry run (2 frames, 2 steps, 5 pretraining steps)')
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.semi_steps, args.warmup, args.pretrain_steps = 2, 2, 1, 5
    if args.semi:
        result = semi_over_sup(args)
        previous = {}
        if osp.exists(args.out):
            with open(args.out) as f:
                previous = json.load(f)
        previous.update(semi=result, semi_over_sup=result['semi_over_sup'])
        os.makedirs(osp.dirname(args.out), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(previous, f, indent=2)
        print(f'wrote {args.out}')
        return previous

    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    import ssl_det  # noqa: F401
    from ssl_det.registry import DATASETS, METRICS, MODELS
    cfg = Config.fromfile(osp.join(ROOT, args.config))
    init_default_scope('ssl_det')
    torch.manual_seed(0)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    bs = cfg.train_dataloader.batch_size
    batches = [pseudo_collate([dataset[i * bs + j] for j in range(bs)])
               for i in range(args.batches + 1)]
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    parts = {k: [] for k in ('voxelize', 'pillars+scatter', 'backbone+neck', 'head+loss',
                             'backward+step', 'step')}
    peer, ours = [], []
    for i, batch in enumerate(batches):
        data = model.data_preprocessor(batch, True)
        points, samples = data['inputs']['points'], data['data_samples']
        t0 = time.perf_counter()
        (kept, coors), t_vox = _timed(lambda: model.voxelizer(points))
        (feats, pcoors), t_pil = _timed(lambda: model.voxel_encoder(kept, coors))
        canvas, t_sc = _timed(lambda: model.middle_encoder(feats, pcoors, len(points)))
        x, t_bb = _timed(lambda: model.neck(model.backbone(canvas)))
        losses, t_head = _timed(lambda: model.bbox_head.loss(x, samples))
        loss = sum(losses.values())
        _, t_bw = _timed(lambda: (optim.zero_grad(), loss.backward(), optim.step()))
        total = time.perf_counter() - t0
        # front ends alone, forward + backward, same points
        enc = model.voxel_encoder

        def ours_fb():
            k, c = model.voxelizer(points)
            f, _ = enc(k, c)
            f.sum().backward()

        def peer_fb():
            f = padded_front_end(points, model.voxelizer.voxel_size,
                                 model.voxelizer.point_cloud_range, enc.linear, enc.norm)
            f.sum().backward()

        _, t_ours = _timed(ours_fb)
        _, t_peer = _timed(peer_fb)
        if i == 0:
            continue  # warm-up
        for key, value in zip(parts, (t_vox, t_pil + t_sc, t_bb, t_head, t_bw, total)):
            parts[key].append(value)
        ours.append(t_ours)
        peer.append(t_peer)

    # metric on the val set with the checkpoint's predictions
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    val = DATASETS.build(cfg.val_dataloader.dataset)
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = val.metainfo
    predict_seconds = 0.0
    for start in range(0, len(val), 4):
        batch = pseudo_collate([val[i] for i in range(start, min(start + 4, len(val)))])
        data = model.data_preprocessor(batch, False)
        with torch.no_grad():
            out, t = _timed(lambda: model.predict(data['inputs'], data['data_samples']))
        predict_seconds += t
        metric.process(batch, [s.to_dict() for s in out])
    num_pred = sum(len(r['pred']['labels_3d']) if 'pred' in r else 0 for r in metric.results)
    _, metric_seconds = _timed(lambda: metric.compute_metrics(metric.results))

    med = {k: statistics.median(v) for k, v in parts.items()}
    rows = [(k, med[k], med[k] / med['step']) for k in parts if k != 'step']
    print(f'| part (median of {args.batches} steps, batch {bs}) | seconds | share of step |')
    print('| --- | --- | --- |')
    for name, sec, share in rows:
        print(f'| {name} | {sec:.4f} | {share:.1%} |')
    print(f'| **step** | {med["step"]:.4f} | 100% |')
    ratio = statistics.median(peer) / statistics.median(ours)
    print(f'\npillar front end fwd+bwd: ours {statistics.median(ours):.4f} s, peer (hard '
          f'voxelization, padded) {statistics.median(peer):.4f} s: ours takes '
          f'{1 / ratio:.2f}x the peer\'s time')
    print(f'val ({len(val)} frames): predict {predict_seconds:.2f} s, metric '
          f'{metric_seconds:.2f} s ({metric_seconds / max(predict_seconds, 1e-9):.2f}x predict)')
    result = dict(
        config=args.config, batch_size=bs, steps=args.batches,
        median_seconds=med, share={k: med[k] / med['step'] for k in parts},
        front_end=dict(ours=statistics.median(ours), peer_padded_hard_voxelization=
                       statistics.median(peer), ours_over_peer=1 / ratio),
        checkpoint=args.checkpoint,
        val=dict(frames=len(val), predict_seconds=predict_seconds,
                 metric_seconds=metric_seconds, predictions=num_pred),
        machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
                f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
