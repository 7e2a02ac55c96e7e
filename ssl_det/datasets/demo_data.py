"""A deterministic synthetic COCO data set for demos and tests: shapes on cluttered textures.

Each 128×128 image holds 1–5 objects of five shape classes (rotated, textured, of random
colour and size, sometimes low-contrast, occluding each other) on a noisy low-frequency
texture with line and blob clutter. Annotations carry boxes, visible-area instance masks
(compressed RLE) and areas. The same seed gives the same bytes.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'cross', 'star')


def _texture(rng: np.random.Generator, size: int, channels: int = 3) -> np.ndarray:
    """Low-frequency colour texture in [0, 255] (float32, HxWxC)."""
    base = rng.uniform(60, 196, size=(1, 1, channels))
    coarse = base + rng.uniform(-50, 50, size=(rng.integers(3, 9), rng.integers(3, 9), channels))
    tex = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(tex, 0, 255)


def _shape_polygon(cls: str, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Vertices (K, 2) of a shape centred at the origin, rotated at random."""
    if cls == 'circle':
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        aspect = rng.uniform(0.85, 1.15)
        pts = np.stack([np.cos(t) * aspect, np.sin(t) / aspect], 1)
    elif cls == 'square':
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.8
    elif cls == 'triangle':
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif cls == 'cross':
        a, b = 1.0, 0.33
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                        [-b, b], [-a, b], [-a, -b], [-b, -b]], np.float64)
    elif cls == 'star':
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    else:
        raise ValueError(f'unknown demo class {cls!r}; expected one of {CLASSES}')
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * radius


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Lines and small blobs that are not objects: the detector must learn shape, not edges."""
    size = img.shape[0]
    for _ in range(rng.integers(1, 5)):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), colour,
                 1, cv2.LINE_AA)
    for _ in range(rng.integers(0, 4)):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(2, 6, 2))
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)


def render_image(rng: np.random.Generator, size: int = 128, max_objects: int = 5,
                 min_radius: float = 7.0, max_radius: float = 20.0
                 ) -> Tuple[np.ndarray, List[Dict]]:
    """Render one image and its objects (label index, visible mask) with ``rng``."""
    img = _texture(rng, size)
    _clutter(rng, img)
    objects: List[Dict] = []
    occupied = np.zeros((size, size), np.int32) - 1  # index of the object on top per pixel
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASSES)))
        radius = rng.uniform(min_radius, max_radius)
        centre = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
        poly = _shape_polygon(CLASSES[label], rng, radius) + centre
        shape_mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(shape_mask, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_AA, shift=4)
        if shape_mask.sum() < 20:
            continue
        # The object's fill: lighter or darker than the background under it, with a hue
        # of its own, so shape (not colour) tells the classes apart.
        base = img[shape_mask > 0].mean(0)
        sign = -1.0 if base.mean() > 128 else 1.0
        shift = sign * rng.uniform(60, 140) + rng.normal(0, 30, size=3)
        colour = np.clip(base + shift, 0, 255)
        fill = colour + rng.normal(0, 8, size=(size, size, 3))
        img[shape_mask > 0] = fill[shape_mask > 0]
        occupied[shape_mask > 0] = len(objects)
        objects.append(dict(label=label))
    img += rng.normal(0, rng.uniform(3, 10), size=img.shape)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.1, 0.8))
    img = np.clip(img, 0, 255).astype(np.uint8)
    kept = []
    for idx, obj in enumerate(objects):
        visible = (occupied == idx).astype(np.uint8)
        if visible.sum() < 20:  # hidden behind later objects: not annotatable
            continue
        obj['mask'] = visible
        kept.append(obj)
    return img, kept


def _annotation(obj: Dict, ann_id: int, image_id: int) -> Dict:
    rle = mask_utils.encode(np.asfortranarray(obj['mask']))
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return dict(id=ann_id, image_id=image_id, category_id=obj['label'] + 1,
                bbox=[x, y, w, h], area=float(mask_utils.area(rle)), iscrowd=0,
                segmentation=dict(size=[int(s) for s in rle['size']],
                                  counts=rle['counts'].decode('ascii')))


def make_split(out_dir: str, split: str, num_images: int, seed: int, size: int = 128,
               first_image_id: int = 1) -> str:
    """Write ``images/{split}/*.png`` and ``annotations/instances_{split}.json``.

    Returns the annotation file's path.
    """
    rng = np.random.default_rng(seed)
    img_dir = osp.join(out_dir, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        image_id = first_image_id + i
        img, objects = render_image(rng, size)
        file_name = f'{split}/{image_id:06d}.png'
        ok, buf = cv2.imencode('.png', img)
        assert ok, 'PNG encoding failed'
        with open(osp.join(out_dir, 'images', file_name), 'wb') as f:
            f.write(buf.tobytes())
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for obj in objects:
            annotations.append(_annotation(obj, len(annotations) + 1, image_id))
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    ann_file = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f,
                  sort_keys=True)
    return ann_file


def make_demo_data(out_dir: str, num_train: int = 1000, num_val: int = 150, seed: int = 0,
                   size: int = 128, splits: Sequence[str] = ('train', 'val')) -> Dict[str, str]:
    """Write the demo data set; returns ``{split: annotation file}``.

    Train and val use different seeds (derived from ``seed``) and disjoint image ids.
    """
    counts = dict(train=num_train, val=num_val)
    files = {}
    first_id = 1
    for offset, split in enumerate(splits):
        files[split] = make_split(out_dir, split, counts[split], seed * 1000 + offset, size,
                                  first_image_id=first_id)
        first_id += counts[split]
    return files
