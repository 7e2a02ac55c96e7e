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
Writes ``benchmarks/results/pillar_step.json``.
"""
import argparse
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/point_cloud/pillar-center_demo3d_sup-all.py')
    parser.add_argument('--batches', type=int, default=10)
    parser.add_argument('--checkpoint', default=None,
                        help='weights for the metric part (a trained model predicts realistic '
                             'boxes; an untrained one predicts almost none)')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'pillar_step.json'))
    args = parser.parse_args(argv)

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
