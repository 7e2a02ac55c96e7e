"""Times ssl_det's compiled ops against named peers in the same run; prints a table, writes JSON.

Peers: mmcv.ops.bbox_overlaps, mmcv.ops.box_iou_rotated and mmcv.ops.roi_align (when mmcv
imports), the
pure-torch references in ssl_det.ops.reference (vectorised torch, also on the GPU), and for
the jitter uncertainty mmdet's SoftTeacher path: its static ``aug_box`` called as is, plus a
line-by-line transcription of the uncertainty part of ``compute_uncertainty_with_aug`` (that
method needs a live teacher, so it cannot be called alone).

Each figure is a median over repeated calls (see ``time_ms``). On the CPU torch is limited to
2 threads (torch.set_num_threads(2)). Peers too slow to run in full
(mmcv's rotated IoU at 5k x 5k) are timed on a row subset and extrapolated per pair; the row
says so in ``peer_note``.

    python benchmarks/ops.py [--device cpu|cuda] [--quick] [--out FILE] [--only GROUP ...]
    python benchmarks/ops.py --markdown benchmarks/results/ops.json   (table for the docs)
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('SSL_DET_OPS_ONLY', '1')  # the ops need no OpenMMLab
from ssl_det import ops  # noqa: E402
from ssl_det.ops import reference as ref  # noqa: E402

# Nominal memory bandwidth (bytes/s) by device-name fragment, first match wins.
NOMINAL_BANDWIDTH = [('H200', 4.8e12), ('H100 PCIe', 2.0e12), ('H100', 3.35e12),
                     ('A100-SXM4-80GB', 2.039e12), ('A100 80GB PCIe', 1.935e12),
                     ('A100', 1.555e12), ('L40S', 0.864e12), ('RTX 4090', 1.008e12)]


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def time_ms(fn, device, repeats, min_repeat_s=0.005):
    """Median wall time of one call of ``fn`` in ms, after a warm-up call.

    CPU: the median over single calls (``repeats`` of them, more for fast ops, up to 200),
    which shrugs off the preemption spikes of a shared machine. GPU: ``repeats`` repeats,
    each looping the op for ``min_repeat_s`` so that launches pipeline; median of their means.
    """
    fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    once = time.perf_counter() - start
    inner = max(1, int(min_repeat_s / max(once, 1e-7)))
    if once > 1.0:  # multi-second peers: the timed call counts, three runs are plenty
        samples = [once]
        for _ in range(2):
            start = time.perf_counter()
            fn()
            sync(device)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e3
    samples = []
    if device == 'cpu':
        for _ in range(max(repeats, min(repeats * inner, 200))):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e3
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples) * 1e3


def try_import(name):
    try:
        return __import__(name, fromlist=['_'])
    except Exception as err:  # noqa: BLE001 - any import failure means "peer absent"
        print(f'[bench] {name} not importable ({type(err).__name__}: {err}); its rows are skipped')
        return None


def boxes_2d(n, gen, device):
    xy = torch.rand(n, 2, generator=gen) * 1000
    wh = torch.rand(n, 2, generator=gen) * 200 + 1
    return torch.cat([xy, xy + wh], dim=1).to(device)


def rotated_scene(n, kind, gen, device, with_z=False):
    """Car-sized boxes (w 1.5-2, l 3.5-5 m, any yaw): 'scattered' over a 50 m square, or a
    'dense' cluster whose centres lie within 0.3 m of the origin (every pair overlaps)."""
    if kind == 'scattered':
        xy = torch.rand(n, 2, generator=gen) * 50
    else:
        r = 0.3 * torch.rand(n, generator=gen).sqrt()
        phi = torch.rand(n, generator=gen) * 2 * math.pi
        xy = torch.stack([r * phi.cos(), r * phi.sin()], dim=1)
    w = 1.5 + 0.5 * torch.rand(n, 1, generator=gen)
    l = 3.5 + 1.5 * torch.rand(n, 1, generator=gen)
    yaw = (torch.rand(n, 1, generator=gen) * 2 - 1) * math.pi
    if not with_z:
        return torch.cat([xy, w, l, yaw], dim=1).to(device)
    z = 1.0 + 0.5 * torch.rand(n, 1, generator=gen)
    dz = 1.4 + 0.3 * torch.rand(n, 1, generator=gen)
    return torch.cat([xy, z, w, l, dz, yaw], dim=1).to(device)


class Runner:
    def __init__(self, device, repeats, device_name):
        self.device, self.repeats, self.device_name = device, repeats, device_name
        self.rows = []

    def add(self, op, size, ours_ms, peer, peer_ms, note=None, **extra):
        row = dict(op=op, size=size, ours_ms=round(ours_ms, 4), peer=peer,
                   peer_ms=round(peer_ms, 4), speedup=round(peer_ms / ours_ms, 2),
                   device=self.device_name)
        if note:
            row['peer_note'] = note
        row.update(extra)
        self.rows.append(row)
        extra_txt = ''.join(f'  {k}={v}' for k, v in extra.items())
        print(f'{op:<34} {size:<26} {ours_ms:>10.3f} {peer:<34} {peer_ms:>11.3f} '
              f'{peer_ms / ours_ms:>8.1f}x{extra_txt}' + (f'  [{note}]' if note else ''),
              flush=True)

    def time(self, fn):
        # On the GPU a repeat runs >= 20 ms so that launch jitter averages out.
        return time_ms(fn, self.device, self.repeats, 0.02 if self.device == 'cuda' else 0.005)

    def time_subset(self, fn_rows, n_rows, total_rows):
        """Times fn_rows(k) on the first k rows and scales to total_rows (per-pair cost)."""
        return self.time(lambda: fn_rows(n_rows)) * total_rows / n_rows


def bandwidth_fields(run, ours_ms, a, b, out_bytes, nominal_bw):
    """GPU only: output bytes written per second, through the Python API (validation
    included) and calling the compiled kernel directly (``kernel_*``), and as a fraction of
    the card's nominal memory bandwidth."""
    if run.device != 'cuda':
        return {}
    from ssl_det.ops.iou import _ext
    kernel_ms = run.time(lambda: _ext.bbox_overlaps(a, b, 0, False, 1e-6))
    fields = {'out_GBps': round(out_bytes / ours_ms / 1e6, 1), 'kernel_ms': round(kernel_ms, 4),
              'kernel_out_GBps': round(out_bytes / kernel_ms / 1e6, 1)}
    if nominal_bw:
        fields['bandwidth_frac'] = round(out_bytes / (ours_ms * 1e-3) / nominal_bw, 3)
        fields['kernel_bandwidth_frac'] = round(out_bytes / (kernel_ms * 1e-3) / nominal_bw, 3)
    return fields


def warm_up_gpu(seconds=1.0):
    """Runs matrix products until the GPU has left its idle clocks."""
    x = torch.randn(4096, 4096, device='cuda')
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            x = (x @ x).clamp_(-1, 1)
        torch.cuda.synchronize()


def bench_iou2d(run, mmcv_ops, sizes, nominal_bw):
    gen = torch.Generator().manual_seed(0)
    for n, m in sizes:
        a, b = boxes_2d(n, gen, run.device), boxes_2d(m, gen, run.device)
        size = f'{n / 1000:g}k x {m / 1000:g}k'
        ours = run.time(lambda: ops.bbox_overlaps(a, b))
        extra = bandwidth_fields(run, ours, a, b, n * m * 4, nominal_bw)
        if mmcv_ops is not None:
            run.add('bbox_overlaps iou fp32', size, ours, 'mmcv.ops.bbox_overlaps',
                    run.time(lambda: mmcv_ops.bbox_overlaps(a, b)), **extra)
        run.add('bbox_overlaps iou fp32', size, ours, 'torch reference',
                run.time(lambda: ref.bbox_overlaps(a, b)), **extra)
        if run.device == 'cuda' and (n, m) == sizes[1]:
            ah, bh = a.half(), b.half()
            ours_h = run.time(lambda: ops.bbox_overlaps(ah, bh))
            extra_h = bandwidth_fields(run, ours_h, ah, bh, n * m * 2, nominal_bw)
            run.add('bbox_overlaps iou fp16', size, ours_h, 'torch reference',
                    run.time(lambda: ref.bbox_overlaps(ah, bh)), **extra_h)
    # GIoU forward + backward (mmcv has neither giou nor a backward).
    a, b = boxes_2d(1000, gen, run.device), boxes_2d(1000, gen, run.device)

    def fwd_bwd(fn):
        p, q = a.clone().requires_grad_(), b.clone().requires_grad_()
        fn(p, q, 'giou').sum().backward()
    run.add('bbox_overlaps giou fwd+bwd fp32', '1k x 1k',
            run.time(lambda: fwd_bwd(ops.bbox_overlaps)), 'torch reference (autograd)',
            run.time(lambda: fwd_bwd(ref.bbox_overlaps)))


def bench_rotated(run, mmcv_ops, sizes, subset_rows):
    gen = torch.Generator().manual_seed(1)
    for kind in ('scattered', 'dense'):
        for n in sizes:
            size = f'{n / 1000:g}k x {n / 1000:g}k {kind}'
            a, b = rotated_scene(n, kind, gen, run.device), rotated_scene(n, kind, gen, run.device)
            ours = run.time(lambda: ops.rotated_iou_bev(a, b))
            k = n if n <= 1000 else min(n, subset_rows)
            note = f'timed on {k} x {n} pairs, scaled per pair' if k < n else None
            if mmcv_ops is not None:
                peer = run.time_subset(lambda r: mmcv_ops.box_iou_rotated(a[:r], b), k, n)
                run.add('rotated_iou_bev fp32', size, ours, 'mmcv.ops.box_iou_rotated', peer, note)
            # The torch reference is slower still on dense scenes: a quarter of the subset.
            k_ref = k if k == n or run.device == 'cuda' else max(1, k // 4)
            note_ref = f'timed on {k_ref} x {n} pairs, scaled per pair' if k_ref < n else None
            peer = run.time_subset(lambda r: ref.rotated_iou_bev(a[:r], b), k_ref, n)
            run.add('rotated_iou_bev fp32', size, ours, 'torch reference', peer, note_ref)
            a3, b3 = (rotated_scene(n, kind, gen, run.device, with_z=True) for _ in range(2))
            ours3 = run.time(lambda: ops.iou_3d(a3, b3))
            peer3 = run.time_subset(lambda r: ref.iou_3d(a3[:r], b3), k_ref, n)
            run.add('iou_3d fp32', size, ours3, 'torch reference', peer3, note_ref)


def mmdet_uncertainty(bboxes_list, labels_list, times):
    """Transcription of the uncertainty part of mmdet 3.3's
    SoftTeacher.compute_uncertainty_with_aug (after ``roi_head.predict``), line for line."""
    reg_channel = max([b.shape[-1] for b in bboxes_list]) // 4
    bboxes = [
        b.reshape(times, -1, b.shape[-1]) if b.numel() > 0 else b.new_zeros(
            times, 0, 4 * reg_channel).float() for b in bboxes_list
    ]
    box_unc = [bbox.std(dim=0) for bbox in bboxes]
    bboxes = [bbox.mean(dim=0) for bbox in bboxes]
    if reg_channel != 1:
        bboxes = [
            bbox.reshape(bbox.shape[0], reg_channel, 4)[torch.arange(bbox.shape[0]), label]
            for bbox, label in zip(bboxes, labels_list)
        ]
        box_unc = [
            unc.reshape(unc.shape[0], reg_channel, 4)[torch.arange(unc.shape[0]), label]
            for unc, label in zip(box_unc, labels_list)
        ]
    box_shape = [(bbox[:, 2:4] - bbox[:, :2]).clamp(min=1.0) for bbox in bboxes]
    box_unc = [
        torch.mean(unc / wh[:, None, :].expand(-1, 2, 2).reshape(-1, 4), dim=-1)
        if wh.numel() > 0 else unc for unc, wh in zip(box_unc, box_shape)
    ]
    return box_unc


def bench_jitter(run, soft_teacher, scenarios, times=10, scale=0.06):
    gen = torch.Generator().manual_seed(2)
    dev = run.device
    for n_img, n_box, classes in scenarios:
        size = f'{n_img} img x {n_box} box x {times}, C={classes}'
        boxes = [boxes_2d(n_box, gen, dev) for _ in range(n_img)]
        labels = [torch.randint(0, classes, (n_box,), generator=gen).to(dev) for _ in range(n_img)]
        # The teacher's refinements (its RoI head is not timed): per image, in each path's
        # own row order, plus ours already batched.
        refined_ours = [torch.randn(n_box * times, 4 * classes, generator=gen).to(dev) * 2 +
                        b.repeat_interleave(times, 0).repeat(1, classes) for b in boxes]
        refined_mmdet = [r.reshape(n_box, times, -1).transpose(0, 1).reshape(n_box * times, -1)
                         for r in refined_ours]
        boxes_cat, labels_cat = torch.cat(boxes), torch.cat(labels)
        refined_cat = torch.cat(refined_ours)
        samples = [types.SimpleNamespace(gt_instances=types.SimpleNamespace(bboxes=b))
                   for b in boxes]

        def ours_batched():
            ops.box_jitter(boxes_cat, times, scale)
            ops.jitter_uncertainty(refined_cat, labels_cat, times)

        def ours_from_lists():  # per-image lists in and out, as mmdet's data flow has them
            sizes = [b.shape[0] for b in boxes]
            jittered = ops.box_jitter(torch.cat(boxes), times, scale)
            jittered.split([s * times for s in sizes])
            ops.jitter_uncertainty(torch.cat(refined_ours), torch.cat(labels), times).split(sizes)

        def mmdet_path():
            auged = soft_teacher.SoftTeacher.aug_box(samples, times, scale)
            [a.reshape(-1, a.shape[-1]) for a in auged]  # mmdet flattens for the teacher
            mmdet_uncertainty(refined_mmdet, labels, times)

        def torch_reference():
            ref.box_jitter(boxes_cat, times, scale)
            ref.jitter_uncertainty(refined_cat, labels_cat, times)

        t_batched, t_lists = run.time(ours_batched), run.time(ours_from_lists)
        if soft_teacher is not None:
            t_mmdet = run.time(mmdet_path)
            peer = 'mmdet SoftTeacher path'
            run.add('jitter+uncertainty (batched)', size, t_batched, peer, t_mmdet)
            run.add('jitter+uncertainty (lists, cat+split)', size, t_lists, peer, t_mmdet)
        run.add('jitter+uncertainty (batched)', size, t_batched, 'torch reference',
                run.time(torch_reference))


def roi_align_case(n_img, channels, size, n_rois, min_px, max_px, stride, gen):
    """FPN-level features (n_img, channels, size, size) of images size * stride pixels wide,
    and n_rois proposals spread over the images: centres uniform, sides uniform in
    [min_px, max_px], clipped to the image."""
    img = size * stride
    x = torch.randn(n_img, channels, size, size, generator=gen)
    ctr = torch.rand(n_rois, 2, generator=gen) * img
    wh = torch.rand(n_rois, 2, generator=gen) * (max_px - min_px) + min_px
    boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1).clamp(0, img)
    batch = torch.randint(0, n_img, (n_rois, 1), generator=gen).float()
    return x, torch.cat([batch, boxes], dim=1)


def bench_roi_align(run, mmcv_ops):
    """RoIAlign (7x7, adaptive sampling, aligned, avg) forward and forward+backward on the
    CPU against mmcv.ops.roi_align, with the largest float32 differences from mmcv."""
    if run.device != 'cpu':
        print('[bench] roi_align: CUDA tensors go to mmcv.ops.roi_align itself; rows skipped')
        return
    if mmcv_ops is None:
        print('[bench] roi_align: mmcv.ops is not importable, no peer; rows skipped')
        return
    gen = torch.Generator().manual_seed(3)
    # A stride-4 FPN level of a 4-image 128-px batch (Soft Teacher's CPU demo), and a
    # stride-4 level of 2 images of 800 px.
    cases = [((4, 256, 32, 32, 2048, 8, 64, 4), '4x256x32x32, 2048 RoIs 8-64 px'),
             ((2, 256, 200, 200, 1024, 16, 256, 4), '2x256x200x200, 1024 RoIs 16-256 px')]
    for (n, c, size, _, k, lo, hi, stride), label in cases:
        x, rois = roi_align_case(n, c, size, k, lo, hi, stride, gen)
        grad = torch.randn(k, c, 7, 7, generator=gen)
        args = (7, 1.0 / stride, 0, 'avg', True)

        def fwd_bwd(fn):
            leaf = x.detach().requires_grad_()
            fn(leaf, rois, *args).backward(grad)
            return leaf.grad

        diff_fwd = (ops.roi_align(x, rois, *args) - mmcv_ops.roi_align(x, rois, *args))
        diff_bwd = fwd_bwd(ops.roi_align) - fwd_bwd(mmcv_ops.roi_align)
        extra = dict(max_abs_diff=float(diff_fwd.abs().max()),
                     max_abs_diff_grad=float(diff_bwd.abs().max()))
        run.add('roi_align fwd fp32', label, run.time(lambda: ops.roi_align(x, rois, *args)),
                'mmcv.ops.roi_align', run.time(lambda: mmcv_ops.roi_align(x, rois, *args)),
                **extra)
        run.add('roi_align fwd+bwd fp32', label, run.time(lambda: fwd_bwd(ops.roi_align)),
                'mmcv.ops.roi_align', run.time(lambda: fwd_bwd(mmcv_ops.roi_align)), **extra)


GROUPS = ('iou2d', 'rotated', 'jitter', 'roi_align')


def fmt_ms(ms):
    return f'{ms:,.0f}' if ms >= 100 else f'{ms:.1f}' if ms >= 10 else f'{ms:.3g}'


def markdown_table(path):
    """A results JSON as the markdown table used in docs/benchmarks.md."""
    with open(path) as f:
        rows = json.load(f)
    lines = ['| op | size | ours (ms) | peer | peer (ms) | speedup | note |',
             '| --- | --- | ---: | --- | ---: | ---: | --- |']
    for r in rows:
        note = r.get('peer_note', '')
        if 'bandwidth_frac' in r:
            note = (f"output written at {r['out_GBps']:.0f} GB/s = {r['bandwidth_frac']:.0%} of "
                    f"nominal bandwidth; {note}").rstrip('; ')
        lines.append(f"| {r['op']} | {r['size']} | {fmt_ms(r['ours_ms'])} | {r['peer']} | "
                     f"{fmt_ms(r['peer_ms'])} | {r['speedup']:.1f}x | {note} |")
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--quick', action='store_true', help='fewer repeats, smaller peer subsets')
    parser.add_argument('--out', help='JSON file (default benchmarks/results/ops.json, or '
                        'ops_cuda.json for --device cuda)')
    parser.add_argument('--markdown', metavar='JSON',
                        help='only print the markdown table of an earlier results file')
    parser.add_argument('--only', nargs='+', choices=GROUPS, metavar='GROUP',
                        help=f'run only these groups ({", ".join(GROUPS)}); the default --out '
                        'is then ops_<groups>.json, so that a partial run never overwrites '
                        'the full results')
    args = parser.parse_args()
    if args.markdown:
        print(markdown_table(args.markdown))
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    groups = args.only or GROUPS
    name = 'ops' if args.device == 'cpu' else 'ops_cuda'
    if args.only:
        name += '_' + '_'.join(g for g in GROUPS if g in args.only)
    out = args.out or os.path.join(root, 'benchmarks', 'results', name + '.json')
    repeats = 3 if args.quick else 7
    nominal_bw = None
    if args.device == 'cpu':
        torch.set_num_threads(2)
        device_name = f'cpu ({torch.get_num_threads()} torch threads)'
        mmcv_ops = try_import('mmcv.ops')
        soft_teacher = (try_import('mmdet.models.detectors.soft_teacher')
                        if 'jitter' in groups else None)
    else:
        if not torch.cuda.is_available() or not ops.cuda_available():
            sys.exit('--device cuda needs CUDA torch and ssl_det._ext built with CUDA')
        device_name = torch.cuda.get_device_name()
        nominal_bw = next((bw for key, bw in NOMINAL_BANDWIDTH if key in device_name), None)
        # Where mmcv/mmdet are installed their CUDA paths are peers too; the GPU check host
        # has neither, so there the peer is the torch reference on the GPU.
        mmcv_ops = try_import('mmcv.ops')
        soft_teacher = (try_import('mmdet.models.detectors.soft_teacher')
                        if 'jitter' in groups else None)
    if args.device == 'cuda':
        warm_up_gpu()
    print(f'[bench] device: {device_name}; torch {torch.__version__}; median of {repeats} repeats')
    if nominal_bw:
        print(f'[bench] nominal memory bandwidth {nominal_bw / 1e12:.2f} TB/s; bandwidth_frac = '
              'IoU output bytes written / time / nominal')
    print(f'{"op":<34} {"size":<26} {"ours_ms":>10} {"peer":<34} {"peer_ms":>11} {"speedup":>9}')
    run = Runner(args.device, repeats, device_name)
    if 'iou2d' in groups:
        bench_iou2d(run, mmcv_ops, [(1000, 1000), (4000, 4000), (20000, 1000)], nominal_bw)
    subset = 100 if args.quick else 200
    if args.device == 'cuda':
        subset = 500 if args.quick else 1000
    if 'rotated' in groups:
        bench_rotated(run, mmcv_ops, [1000, 5000], subset)
    if 'jitter' in groups:
        bench_jitter(run, soft_teacher, [(4, 20, 80), (8, 500, 80)])
    if 'roi_align' in groups:
        bench_roi_align(run, mmcv_ops)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(run.rows, f, indent=1)
    print(f'[bench] wrote {len(run.rows)} rows to {out}')


if __name__ == '__main__':
    main()
