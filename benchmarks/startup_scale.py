"""Start-up time and memory of the semi-supervised training data with a huge unlabeled pool.

    python benchmarks/startup_scale.py [--sizes 123403 1000000] [--labeled 1000] [--out FILE]
        [--tmp DIR] [--impls ssl_det ssl_det_coco mmdet ssl_det_plain mmdet_plain]
        [--repeats 3]

Writes synthetic COCO files to a temporary directory (not the repository): a labeled file
(``--labeled`` images with 1-5 boxes each) and, for every size N, an unlabeled file listing N
images (``id``, ``file_name``, ``width``, ``height``; 80 COCO categories; no annotations).
No image is read or written. Each case runs in a fresh subprocess, which builds the training
dataloader exactly as a run does (``Runner.build_dataloader``: ConcatDataset of labeled +
unlabeled ``CocoDataset``, then the sampler), from the real dataset configs:

* ``ssl_det``: ``configs/_base_/datasets/semi_coco_detection.py`` as it is (ssl_det's
  ``MultiSourceSampler`` with ``group_by_aspect_ratio=True``; the datasets inherit
  ``_scope_='mmdet'`` from mmdet's base config, so they are mmdet's ``CocoDataset``), then the
  annotation part of the start-up check every ssl_det run makes (``DataCheckHook``: empty
  splits and the labeled/unlabeled category check, ``check_images=False``) and, separately,
  its image check (one ``stat`` per listed image; the images are absent here, so every one is
  "missing").
* ``ssl_det_coco``: the same with ssl_det's ``CocoDataset`` (``type='ssl_det.CocoDataset'``,
  what the demo configs build), and the same checks.
* ``mmdet``: the peer, ``mmdet::_base_/datasets/semi_coco_detection.py`` (mmdet's
  ``CocoDataset`` and ``GroupMultiSourceSampler``).
* ``ssl_det_plain`` / ``mmdet_plain``: the same without aspect-ratio grouping (ssl_det's
  sampler with ``group_by_aspect_ratio=False``; mmdet's ``MultiSourceSampler``).

Per case (``--repeats`` fresh subprocesses, round-robin over the cases; seconds are the median,
peaks the largest): seconds to build the dataset and the sampler (+ DataLoader), to draw the first
batch of indices, peak RSS (``ru_maxrss``) after each phase, the post-import baseline, and how
many times each annotation file is opened (``open`` is wrapped in the subprocess). Prints a
markdown table and the ssl_det/mmdet ratios; writes ``benchmarks/results/startup_scale.json``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# COCO's 80 category ids (1..90 with gaps) and mmdet's class names, in order.
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49,
            50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74,
            75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]
# Typical COCO image sizes; about a quarter portrait.
SIZES = [(640, 480), (640, 427), (480, 640), (640, 360), (500, 375), (427, 640), (640, 640),
         (612, 612)]
IMPLS = ('ssl_det', 'ssl_det_coco', 'mmdet', 'ssl_det_plain', 'mmdet_plain')
PEERS = {'ssl_det': 'mmdet', 'ssl_det_coco': 'mmdet', 'ssl_det_plain': 'mmdet_plain'}
CHECKED = ('ssl_det', 'ssl_det_coco')  # cases that also run DataCheckHook's checks
BATCH_SIZE, SOURCE_RATIO = 5, [1, 4]


# --------------------------------------------------------------------------- synthetic files
def _categories():
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    return [dict(id=i, name=n, supercategory='none') for i, n in zip(COCO_IDS, names)]


def write_labeled(path, num_images, seed=0):
    rng = random.Random(seed)
    images, anns = [], []
    for i in range(num_images):
        w, h = rng.choice(SIZES)
        images.append(dict(id=i + 1, file_name=f'{i + 1:012d}.jpg', width=w, height=h))
        for _ in range(rng.randint(1, 5)):
            bw, bh = rng.uniform(16, w / 2), rng.uniform(16, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=rng.choice(COCO_IDS),
                             bbox=[round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                             area=round(bw * bh, 2), iscrowd=0))
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=_categories()), f)


def write_unlabeled(path, num_images, first_id=10**8, seed=1):
    """Streams the file: the parent never holds N image dicts."""
    rng = random.Random(seed)
    with open(path, 'w') as f:
        f.write('{"images": [')
        for i in range(num_images):
            w, h = rng.choice(SIZES)
            img_id = first_id + i
            f.write(('' if i == 0 else ', ') + f'{{"id": {img_id}, "file_name": '
                    f'"{img_id:012d}.jpg", "width": {w}, "height": {h}}}')
        f.write('], "categories": ' + json.dumps(_categories()) + '}')


# -------------------------------------------------------------------------- the subprocess
def _rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _peak_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(impl, labeled, unlabeled, data_root):
    import builtins
    import io
    watched = {osp.realpath(labeled): 'labeled', osp.realpath(unlabeled): 'unlabeled'}
    opens = {'labeled': 0, 'unlabeled': 0}
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            role = watched.get(osp.realpath(os.fsdecode(file)))
            if role is not None:
                opens[role] += 1
        return real_open(file, *args, **kwargs)

    builtins.open = io.open = counting_open

    def take_opens():
        out = dict(opens)
        opens.update(labeled=0, unlabeled=0)
        return out

    # The same imports for every case, so the baselines compare.
    import gc
    import tracemalloc

    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import ssl_det  # noqa: F401
    from ssl_det.engine.hooks.data_check_hook import check_dataset, missing_images
    torch.set_num_threads(1)
    gc.collect()
    out = dict(impl=impl, baseline_peak_mb=_peak_mb(), baseline_rss_mb=_rss_mb())

    if impl.startswith('ssl_det'):
        cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/semi_coco_detection.py'))
        init_default_scope('ssl_det')
        if impl == 'ssl_det_plain':
            cfg.train_dataloader.sampler.group_by_aspect_ratio = False
        if impl == 'ssl_det_coco':
            # The config inherits mmdet's base, whose dicts carry `_scope_='mmdet'`: it builds
            # mmdet's CocoDataset. This case builds ssl_det's, as the demo configs do.
            for sub in cfg.train_dataloader.dataset.datasets:
                sub.type = 'ssl_det.CocoDataset'
    else:
        import mmdet
        cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_',
                                       'datasets', 'semi_coco_detection.py'))
        init_default_scope('mmdet')
        if impl == 'mmdet_plain':
            cfg.train_dataloader.sampler.type = 'MultiSourceSampler'
    loader_cfg = cfg.train_dataloader.to_dict()
    for sub, ann_file in zip(loader_cfg['dataset']['datasets'], (labeled, unlabeled)):
        sub.update(data_root=data_root, ann_file=ann_file)
    loader_cfg.update(num_workers=0, persistent_workers=False)
    out['dataset_types'] = [d['type'] for d in loader_cfg['dataset']['datasets']]
    out['sampler'] = dict(loader_cfg['sampler'])
    take_opens()

    from mmengine.registry import DATASETS
    start = time.perf_counter()
    dataset = DATASETS.build(loader_cfg.pop('dataset'))
    dataset.full_init()
    out['dataset_seconds'] = time.perf_counter() - start
    start = time.perf_counter()
    loader = Runner.build_dataloader(dict(loader_cfg, dataset=dataset), seed=0)
    out['sampler_seconds'] = time.perf_counter() - start
    out['seconds'] = out['dataset_seconds'] + out['sampler_seconds']
    out['peak_mb'] = _peak_mb()
    out['rss_after_build_mb'] = _rss_mb()
    out['opens_build'] = take_opens()
    out['dataset_class'] = [type(d).__module__ + '.' + type(d).__name__
                            for d in dataset.datasets]
    out['sampler_class'] = type(loader.sampler).__module__ + '.' + type(loader.sampler).__name__
    out['images'] = [len(d) for d in dataset.datasets]

    start = time.perf_counter()
    it = iter(loader.sampler)
    first = [next(it) for _ in range(BATCH_SIZE)]
    out['first_batch_seconds'] = time.perf_counter() - start
    out['first_batch'] = first
    out['peak_mb_after_first_batch'] = _peak_mb()
    del it

    if impl in CHECKED:
        # The annotation part of DataCheckHook (before_train of every ssl_det run, each rank).
        start = time.perf_counter()
        check_dataset(dataset, 'train', check_images=False)
        out['check_seconds'] = time.perf_counter() - start
        out['peak_mb_after_check'] = _peak_mb()
        out['opens_check'] = take_opens()
        # What it allocates (the peak RSS above hides it when the build's freed memory is
        # reused): run it again under tracemalloc.
        tracemalloc.start()
        check_dataset(dataset, 'train', check_images=False)
        out['check_alloc_peak_mb'] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        take_opens()
        # Its image part: one stat per listed unlabeled image (all absent here).
        start = time.perf_counter()
        missing = missing_images(dataset.datasets[1])
        out['image_check_seconds'] = time.perf_counter() - start
        out['image_check_missing'] = len(missing)
        del missing
        out['peak_mb_after_image_check'] = _peak_mb()
    out['above_baseline_mb'] = out['peak_mb'] - out['baseline_peak_mb']
    out['opens'] = {k: out['opens_build'][k] + out.get('opens_check', {}).get(k, 0)
                    for k in opens}
    print('RESULT ' + json.dumps(out))


# ------------------------------------------------------------------------------ the parent
def run_case(impl, labeled, unlabeled, data_root, timeout):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run(
        [sys.executable, osp.abspath(__file__), '--worker', impl, labeled, unlabeled, data_root],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f'{impl} failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n'
                           f'{proc.stderr[-4000:]}')
    return json.loads(lines[-1][len('RESULT '):])


TIMES = ('seconds', 'dataset_seconds', 'sampler_seconds', 'first_batch_seconds', 'check_seconds',
         'image_check_seconds')


def combine(runs):
    """One row from repeated runs of a case: median seconds, largest peaks."""
    row = dict(runs[0], repeats=len(runs), seconds_runs=[r['seconds'] for r in runs])
    for key in runs[0]:
        values = [r[key] for r in runs]
        if key in TIMES:
            row[key] = statistics.median(values)
        elif key.endswith('_mb') and key.startswith(('peak', 'above', 'check_alloc')):
            row[key] = max(values)
    return row


def _fmt_opens(opens):
    return f"{opens['labeled']}/{opens['unlabeled']}"


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == '--worker':
        worker(*sys.argv[2:6])
        return None
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[123403, 1000000],
                        help='images in the unlabeled file (one run each)')
    parser.add_argument('--labeled', type=int, default=1000, help='images in the labeled file')
    parser.add_argument('--impls', nargs='+', default=list(IMPLS), choices=IMPLS)
    parser.add_argument('--tmp', default=None,
                        help='where the synthetic files go (default: a fresh temp dir, removed '
                             'at the end)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='subprocesses per case (median seconds, largest peak)')
    parser.add_argument('--timeout', type=int, default=3600, help='seconds per case')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'startup_scale.json'))
    args = parser.parse_args(argv)

    own_tmp = args.tmp is None
    tmp = tempfile.mkdtemp(prefix='startup_scale_') if own_tmp else args.tmp
    os.makedirs(tmp, exist_ok=True)
    rows = []
    try:
        labeled = osp.join(tmp, f'labeled_{args.labeled}.json')
        if not osp.exists(labeled):
            write_labeled(labeled, args.labeled)
        for size in args.sizes:
            unlabeled = osp.join(tmp, f'unlabeled_{size}.json')
            if not osp.exists(unlabeled):
                start = time.perf_counter()
                write_unlabeled(unlabeled, size)
                print(f'wrote {unlabeled} ({osp.getsize(unlabeled) / 2**20:.1f} MB) in '
                      f'{time.perf_counter() - start:.1f} s', flush=True)
            # Round-robin over the cases, so that a change in the machine's load (it may be
            # shared) hits every case alike.
            runs = {impl: [] for impl in args.impls}
            for _ in range(args.repeats):
                for impl in args.impls:
                    runs[impl].append(run_case(impl, labeled, unlabeled, tmp, args.timeout))
            for impl in args.impls:
                row = combine(runs[impl])
                row.update(unlabeled_images=size, labeled_images=args.labeled,
                           ann_file_mb=osp.getsize(unlabeled) / 2**20)
                rows.append(row)
                print(f'  {impl:14s} N={size}: build {row["seconds"]:.1f} s, peak '
                      f'{row["peak_mb"]:.0f} MB', flush=True)
            if own_tmp:
                os.remove(unlabeled)
    finally:
        if own_tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)

    print('\n| impl | unlabeled images | build s (dataset + sampler) | first batch s | '
          'peak MB | above baseline MB | opens labeled/unlabeled |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for r in rows:
        print(f'| {r["impl"]} | {r["unlabeled_images"]:,} | {r["seconds"]:.1f} '
              f'({r["dataset_seconds"]:.1f} + {r["sampler_seconds"]:.1f}) | '
              f'{r["first_batch_seconds"]:.2f} | {r["peak_mb"]:.0f} | '
              f'{r["above_baseline_mb"]:.0f} | {_fmt_opens(r["opens_build"])} |')
    checks = [r for r in rows if 'check_seconds' in r]
    if checks:
        print('\nssl_det start-up check (DataCheckHook, on every rank):\n')
        print('| impl | unlabeled images | annotation check s | allocates MB | peak MB after '
              'it | opens labeled/unlabeled | image check s (stat each, all absent) |')
        print('| --- | --- | --- | --- | --- | --- | --- |')
        for r in checks:
            print(f'| {r["impl"]} | {r["unlabeled_images"]:,} | {r["check_seconds"]:.2f} | '
                  f'{r["check_alloc_peak_mb"]:.0f} | {r["peak_mb_after_check"]:.0f} | '
                  f'{_fmt_opens(r["opens_check"])} | {r["image_check_seconds"]:.1f} |')
    ratios = []
    by_key = {(r['impl'], r['unlabeled_images']): r for r in rows}
    for ours, peer in PEERS.items():
        for size in args.sizes:
            a, b = by_key.get((ours, size)), by_key.get((peer, size))
            if a and b:
                ratios.append(dict(
                    impl=ours, peer=peer, unlabeled_images=size,
                    seconds=a['seconds'] / b['seconds'], peak_mb=a['peak_mb'] / b['peak_mb'],
                    above_baseline_mb=a['above_baseline_mb'] / max(b['above_baseline_mb'], 1e-9),
                    seconds_with_check=(a['seconds'] + a.get('check_seconds', 0)) / b['seconds'],
                    peak_mb_with_check=a.get('peak_mb_after_check', a['peak_mb']) / b['peak_mb']))
    if ratios:
        print('\n| ratio | unlabeled images | build seconds | peak MB | above baseline MB | '
              'seconds incl. annotation check | peak incl. annotation check |')
        print('| --- | --- | --- | --- | --- | --- | --- |')
        for q in ratios:
            print(f'| {q["impl"]}/{q["peer"]} | {q["unlabeled_images"]:,} | {q["seconds"]:.2f} | '
                  f'{q["peak_mb"]:.2f} | {q["above_baseline_mb"]:.2f} | '
                  f'{q["seconds_with_check"]:.2f} | {q["peak_mb_with_check"]:.2f} |')
    import torch
    result = dict(
        entries=rows, ratios=ratios, batch_size=BATCH_SIZE, source_ratio=SOURCE_RATIO,
        machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
                f'python {platform.python_version()}, torch {torch.__version__}, '
                'one thread per case; shared with other jobs')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
