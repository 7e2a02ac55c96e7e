"""Convert YOLO box labels (one .txt per image) into a COCO file.

Example (an Ultralytics-style folder; ``data_prefix=dict(img='data/mine/images/train/')``):
    python tools/dataset_converters/yolo_to_coco.py data/mine/images/train \
        data/mine/labels/train --classes-file data/mine/classes.txt \
        --out data/mine/annotations/train.json

Each image under IMAGE_DIR (recursively; ``file_name`` relative to it, ids 1..N in sorted
order) has its labels in LABEL_DIR at the same relative path with the suffix ``.txt``
(``images/train/a/1.jpg`` -> ``labels/train/a/1.txt``). A label line is ``class cx cy w h``,
the box centre and size divided by the image's width and height (the image as loaded: its
size read from the header, after EXIF orientation), ``class`` an index into the classes file
(one name a line, category id = index + 1; blank lines at its end are ignored). A class
index that is not an integer in 0..K-1, a line without exactly 5 numbers (segmentation
polygons are not supported) or a value that is not a finite number is an error naming the
label file and line. Boxes are clipped to the image: one partly outside is clipped, one
empty (w or h <= 0) or entirely outside is dropped, each counted and named.

An image without a label file is a background image (no boxes), as in YOLO, and counted; a
label file without an image (with one of the extensions) is skipped and named, as are
unreadable images.
"""
import argparse
import math
import os.path as osp
import sys
from collections import defaultdict
from typing import List, Sequence, Tuple

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from tools.dataset_converters.coco_writer import (IMAGE_EXTENSIONS,  # noqa: E402
                                                  CocoBuilder, ConversionError, Report,
                                                  UnreadableImage, check_output, list_files,
                                                  listing, make_categories,
                                                  normalize_extensions, plural,
                                                  read_image_size, write_coco)


def read_class_names(path: str) -> List[str]:
    """The names of a classes file: one a line; blank lines only at its end."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'classes file {path} not found')
    with open(path, encoding='utf-8-sig') as f:
        lines = [line.strip() for line in f]
    while lines and not lines[-1]:
        lines.pop()
    for number, name in enumerate(lines, 1):
        if not name:
            raise ConversionError(f'{path} line {number}: blank line between class names '
                                  '(class indices would shift)')
    if not lines:
        raise ConversionError(f'classes file {path} holds no class name')
    try:
        return [c['name'] for c in make_categories(lines)]
    except ConversionError as exc:
        raise ConversionError(f'{path}: {exc}') from None


def parse_label_line(line: str, num_classes: int, where: str) -> Tuple[int, Tuple[float, ...]]:
    """``(class index, (cx, cy, w, h))`` of a YOLO label line; errors name ``where``."""
    values = line.split()
    if len(values) != 5:
        hint = ('; a segmentation polygon? only boxes are supported' if len(values) > 5
                and len(values) % 2 == 1 else '')
        raise ConversionError(f'{where}: expected 5 values (class cx cy w h), got '
                              f'{len(values)}{hint}')
    try:
        index = float(values[0])
    except ValueError:
        index = math.nan
    if not index.is_integer():
        raise ConversionError(f'{where}: class index {values[0]!r} is not an integer')
    if not 0 <= index < num_classes:
        raise ConversionError(f'{where}: class index {int(index)} is out of range for the '
                              f'{num_classes} classes (0..{num_classes - 1})')
    try:
        box = tuple(float(v) for v in values[1:])
    except ValueError:
        box = (math.nan, )
    if not all(math.isfinite(v) for v in box):
        raise ConversionError(f'{where}: {" ".join(values[1:])!r} are not 4 finite numbers')
    return int(index), box


def yolo_to_coco(image_dir: str, label_dir: str, class_names: Sequence[str],
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 ignore: Sequence[str] = ()) -> Tuple[dict, Report]:
    """The COCO content of YOLO labels (see the module docstring for the rules).

    Args:
        image_dir (str): The image folder (searched recursively).
        label_dir (str): The label folder, mirroring ``image_dir``.
        class_names (Sequence[str]): Class names by YOLO index.
        extensions (Sequence[str]): Image file extensions (any case).
        ignore (Sequence[str]): Files in ``label_dir`` that are no label file (the
            classes file when it lies there).

    Returns:
        tuple: ``(coco, report)``: the COCO dict and a :class:`Report` (``skipped``,
        ``clipped``, ``dropped``).

    Raises:
        ConversionError: A bad label line (naming file and line), two images sharing a
            label file, no image left.
        FileNotFoundError: No such folder.
    """
    extensions = normalize_extensions(extensions)
    categories = make_categories(list(class_names))
    images = list_files(image_dir, extensions)
    labels = set(list_files(label_dir, ['.txt']))
    ignore = {osp.realpath(p) for p in ignore}
    labels = {n for n in labels if osp.realpath(osp.join(label_dir, n)) not in ignore}
    by_label = defaultdict(list)
    for name in images:
        by_label[osp.splitext(name)[0] + '.txt'].append(name)
    shared = [names for names in by_label.values() if len(names) > 1]
    if shared:
        raise ConversionError(f'{", ".join(shared[0])} would share the label file '
                              f'{osp.splitext(shared[0][0])[0]}.txt; rename one')
    builder = CocoBuilder(categories)
    report = builder.report
    background = []
    for name in images:
        label = osp.splitext(name)[0] + '.txt'
        try:
            width, height = read_image_size(osp.join(image_dir, name))
        except UnreadableImage as exc:
            report.skip(name, exc.reason)
            continue
        image_id = builder.add_image(name, width, height)
        if label not in labels:
            background.append(name)
            continue
        label_path = osp.join(label_dir, label)
        try:
            with open(label_path, encoding='utf-8-sig') as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConversionError(f'{label_path}: cannot be read as a text file ({exc})') \
                from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f'{label_path} line {number}'
            index, (cx, cy, w, h) = parse_label_line(line, len(categories), where)
            xyxy = ((cx - w / 2) * width, (cy - h / 2) * height,
                    (cx + w / 2) * width, (cy + h / 2) * height)
            builder.add_box(image_id, index + 1, xyxy, f'{label} line {number}')
    for label in sorted(labels.difference(by_label)):
        report.skip(label, 'label file without an image')
    if background:
        report.notes.append(f'{len(background)} image(s) without a label file, kept as '
                            f'background images (no box): {listing(background)}')
    if not builder.images:
        raise ConversionError(f'no image left in {image_dir} ({plural(len(images), "file")} '
                              f'with extensions {" ".join(extensions)}; '
                              f'{report.skipped_line()})')
    return builder.coco(), report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image_dir', help='folder of images (searched recursively)')
    parser.add_argument('label_dir', help='folder of YOLO .txt labels mirroring IMAGE_DIR')
    parser.add_argument('--classes-file', required=True,
                        help='class names, one a line, in YOLO index order')
    parser.add_argument('--out', required=True, help='COCO file to write')
    parser.add_argument('--extensions', nargs='+', default=list(IMAGE_EXTENSIONS),
                        help=f'image file extensions, any case (default: '
                        f'{" ".join(IMAGE_EXTENSIONS)})')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        check_output(args.out, [args.classes_file])
        names = read_class_names(args.classes_file)
        coco, report = yolo_to_coco(args.image_dir, args.label_dir, names, args.extensions,
                                    ignore=[args.classes_file])
        write_coco(coco, args.out)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f'yolo_to_coco: error: {exc}')
    print(report.summary('yolo_to_coco', args.out, coco))
    return coco, report


if __name__ == '__main__':
    main()
