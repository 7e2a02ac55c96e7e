"""README "Your own data": its bash block runs as written, from a folder of images to an
exported detector, on a small stand-in for ../shared/data/deeppcb (same layout, file names
and categories; 640-px scans with defect boxes). Only the training and test commands get
extra ``--cfg-options`` (two iterations, loading in-process), appended to what the README says."""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import numpy as np

from demo_helpers import ROOT

CLASSES = ('open', 'short', 'mousebite', 'spur', 'copper', 'pin-hole')
FAST = ('train_cfg.max_iters=2 train_cfg.val_interval=2 '
        'train_dataloader.num_workers=0 train_dataloader.persistent_workers=False '
        'val_dataloader.num_workers=0 val_dataloader.persistent_workers=False '
        'test_dataloader.num_workers=0 test_dataloader.persistent_workers=False')


def readme_block() -> str:
    text = open(osp.join(ROOT, 'README.md')).read()
    section = text.split('## Your own data', 1)[1].split('\n## ', 1)[0]
    return re.search(r'```bash\n(.*?)```', section, re.S).group(1)


def fake_deeppcb(root: str, num_train: int = 20, num_val: int = 6, seed: int = 0) -> None:
    """DeepPCB's layout: images/NNNNNNNN.jpg (640x640, grey), annotations/instances_{train,
    val}.json with the six categories and 4-8 defects per scan."""
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'))
    os.makedirs(osp.join(root, 'annotations'))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    ann_id = 0
    for split, ids in (('train', range(num_train)), ('val', range(num_train,
                                                                  num_train + num_val))):
        images, annotations = [], []
        for i in ids:
            img = np.full((640, 640), 255, np.uint8)
            img[::40] = 0  # copper tracks
            name = f'{20085000 + i:08d}.jpg'
            images.append(dict(id=i + 1, file_name=name, width=640, height=640))
            for _ in range(rng.integers(4, 9)):
                w, h = rng.integers(24, 60, size=2)
                x, y = rng.integers(0, 640 - 60, size=2)
                img[y:y + h, x:x + w] = 0
                ann_id += 1
                annotations.append(dict(id=ann_id, image_id=i + 1, iscrowd=0,
                                        category_id=int(rng.integers(1, 7)),
                                        bbox=[int(x), int(y), int(w), int(h)],
                                        area=int(w * h)))
            cv2.imwrite(osp.join(root, 'images', name), img)
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def test_readme_own_data_commands_run_end_to_end(tmp_path):
    block = readme_block()
    # a checkout of the repository beside ../shared/data/deeppcb, as on this machine
    repo, shared = tmp_path / 'checkout', tmp_path / 'shared' / 'data' / 'deeppcb'
    repo.mkdir()
    for name in ('tools', 'configs'):
        shutil.copytree(osp.join(ROOT, name), repo / name,
                        ignore=shutil.ignore_patterns('__pycache__'))
    venv = osp.dirname(osp.dirname(sys.executable))
    os.symlink(venv, repo / '.venv')
    fake_deeppcb(str(shared))

    script = block.replace('\\\n', ' ')
    lines = []
    for line in script.splitlines():
        if re.match(r'\s*python tools/(train|test)\.py', line):
            line += f' --cfg-options {FAST}'
        lines.append(line)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(['bash', '-euo', 'pipefail', '-c', '\n'.join(lines)], cwd=repo,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    ann = repo / 'data' / 'mypcb' / 'annotations'
    labeled = json.load(open(ann / 'instances_train.1@10.json'))
    unlabeled = json.load(open(ann / 'unlabeled.json'))
    # every scan that is neither labeled nor a test scan, and nothing else
    assert len(labeled['images']) == 2 and not unlabeled['annotations']
    names = {img['file_name'] for img in unlabeled['images']}
    assert len(names) == 18
    assert not names & {img['file_name'] for img in labeled['images']}
    assert unlabeled['categories'] == labeled['categories']
    # stage 2 continued stage 1's checkpoint, evaluated teacher and student
    stage1 = open(repo / 'work_dirs' / 'mypcb' / 'stage1' / 'last_checkpoint').read().strip()
    logs = ''.join(open(osp.join(d, f)).read()
                   for d, _, fs in os.walk(repo / 'work_dirs' / 'mypcb' / 'stage2')
                   for f in fs if f.endswith('.log'))
    assert f'Load checkpoint from {stage1}' in logs
    assert 'teacher/coco/bbox_mAP' in logs and 'student/coco/bbox_mAP' in logs
    quality = list((repo / 'work_dirs' / 'mypcb' / 'stage2').glob('pseudo_label_quality.json'))
    assert quality and json.load(open(quality[0]))['images'] == 18
    assert 'coco/bbox_mAP' in result.stdout + result.stderr  # tools/test.py evaluated
    exported = sorted(os.listdir(repo / 'exported' / 'mypcb'))
    assert any(f.endswith('.pth') for f in exported) and any(f.endswith('.py')
                                                             for f in exported)
