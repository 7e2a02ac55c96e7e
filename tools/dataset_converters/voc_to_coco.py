"""Convert Pascal VOC style XML annotations (your own, or VOC's) into a COCO file.

Example (VOC2007 trainval with VOC's class order; ``data_prefix=dict(img='JPEGImages/')``):
    python tools/dataset_converters/voc_to_coco.py data/VOCdevkit/VOC2007 \
        --split trainval --out data/VOCdevkit/VOC2007/trainval_coco.json \
        --classes aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog \
        horse motorbike person pottedplant sheep sofa train tvmonitor

VOC_ROOT holds ``Annotations/*.xml`` and ``JPEGImages/``; with ``--split NAME`` only the ids
of ``ImageSets/Main/NAME.txt`` are converted (first word of each line, duplicates once),
otherwise every XML file. Images get ids 1..N sorted by XML stem; ``file_name`` is the XML's
``<filename>`` (else ``<stem>.jpg``), relative to ``JPEGImages/``.

Categories: ``--classes`` fixes their order (ids 1..K) and an object of another class is an
error naming the XML file and the line of its ``<name>``; without it, the sorted names found
in the XML files (pass ``--classes`` so that every split gets the same ids).

Coordinates follow mmdet's ``VOCDataset`` (mmdet/datasets/xml_style.py), which subtracts 1
from all four 1-based VOC coordinates: the COCO box is ``x = xmin - 1``, ``y = ymin - 1``,
``w = xmax - xmin``, ``h = ymax - ymin``, so mmdet's ``CocoDataset`` on the COCO file
gives the same ``[x1, y1, x2, y2] = [xmin - 1, ymin - 1, xmax - 1, ymax - 1]`` as mmdet's
``VOCDataset`` on the XML files (fractional coordinates are kept, where mmdet truncates
them). Boxes are clipped to the image (its size from ``<size>``, or from the image's header
when ``<size>`` is missing or zero): a box partly outside is clipped, one empty (``xmax <=
xmin``) or entirely outside is dropped, each counted and named. ``<difficult>1`` objects
get ``iscrowd=1``, which mmdet's ``CocoDataset`` loads as ignored boxes (``ignore_flag``,
as ``VOCDataset`` does for difficult ones) and COCO evaluation does not count as missed.
An XML file whose image is missing or unreadable is skipped (with its boxes), named.
"""
import argparse
import os
import os.path as osp
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Tuple
from xml.parsers import expat

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from tools.dataset_converters.coco_writer import (CocoBuilder, ConversionError,  # noqa: E402
                                                  Report, UnreadableImage, listing,
                                                  make_categories, read_image_size,
                                                  relative_name, write_coco)


def parse_xml(path: str) -> Tuple[ET.Element, Dict[ET.Element, int]]:
    """The XML file's root element and the line number of each element's start tag."""
    builder = ET.TreeBuilder()
    lines: Dict[ET.Element, int] = {}
    parser = expat.ParserCreate()

    def start(tag, attrs):
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
    except expat.ExpatError as exc:
        raise ConversionError(f'{path}: not a valid XML file ({exc})') from None
    return builder.close(), lines


class _VocFile:
    """The parts of one VOC XML file that the conversion uses."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path  # for error messages
        self.name = name  # e.g. Annotations/0001.xml, for the report
        root, lines = parse_xml(path)

        def text(parent: ET.Element, tag: str) -> Optional[str]:
            child = parent.find(tag)
            return None if child is None or child.text is None else child.text.strip()

        def number(parent: ET.Element, tag: str, where: ET.Element) -> float:
            value = text(parent, tag)
            try:
                return float(value)
            except (TypeError, ValueError):
                line = lines.get(parent.find(tag), lines[where])
                raise ConversionError(f'{path} line {line}: <{tag}> is '
                                      f'{"missing" if value is None else repr(value)}, '
                                      'not a number') from None

        stem = osp.splitext(osp.basename(path))[0]
        self.file_name = relative_name(text(root, 'filename') or f'{stem}.jpg')
        self.size = None
        size = root.find('size')
        if size is not None:
            try:
                width, height = (int(float(text(size, t) or 0)) for t in ('width', 'height'))
            except ValueError:
                width = height = 0
            if width > 0 and height > 0:
                self.size = (width, height)
        self.objects = []  # (name, line of <name>, difficult, (xmin, ymin, xmax, ymax))
        for obj in root.findall('object'):
            name_elem = obj.find('name')
            name = text(obj, 'name')
            if not name:
                raise ConversionError(f'{path} line {lines[obj]}: <object> without a <name>')
            box = obj.find('bndbox')
            if box is None:
                raise ConversionError(f'{path} line {lines[obj]}: <object> ({name}) without '
                                      'a <bndbox>')
            coords = tuple(number(box, t, box) for t in ('xmin', 'ymin', 'xmax', 'ymax'))
            difficult = number(obj, 'difficult', obj) if text(obj, 'difficult') else 0
            self.objects.append((name, lines[name_elem], bool(difficult), coords))


def _split_ids(voc_root: str, split: str) -> List[str]:
    split_file = osp.join(voc_root, 'ImageSets', 'Main', f'{split}.txt')
    if not osp.isfile(split_file):
        raise FileNotFoundError(f'split file {split_file} not found (--split {split})')
    with open(split_file, encoding='utf-8-sig') as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ConversionError(f'split file {split_file} lists no image')
    return ids


def voc_to_coco(voc_root: str, split: Optional[str] = None,
                classes: Optional[Sequence[str]] = None) -> Tuple[dict, Report]:
    """The COCO content of a VOC-style folder (see the module docstring for the rules).

    Args:
        voc_root (str): Folder with ``Annotations/`` and ``JPEGImages/``.
        split (str, optional): Convert only the ids of ``ImageSets/Main/{split}.txt``.
        classes (Sequence[str], optional): Category names in id order; default: the
            sorted names found in the XML files.

    Returns:
        tuple: ``(coco, report)``: the COCO dict and a :class:`Report` (``skipped``,
        ``clipped``, ``dropped``).

    Raises:
        ConversionError: An invalid XML file, an object of a class not in ``classes``
            (naming the file and line), no image left.
        FileNotFoundError: No ``Annotations/``, ``JPEGImages/`` or split file.
    """
    ann_dir, img_dir = osp.join(voc_root, 'Annotations'), osp.join(voc_root, 'JPEGImages')
    for folder in (ann_dir, img_dir):
        if not osp.isdir(folder):
            raise FileNotFoundError(f'{folder}: no such folder (VOC_ROOT must hold '
                                    'Annotations/ and JPEGImages/)')
    report = Report()
    if split:
        stems = sorted(set(_split_ids(voc_root, split)))
    else:
        stems = sorted(osp.splitext(n)[0] for n in os.listdir(ann_dir)
                       if n.lower().endswith('.xml'))
        if not stems:
            raise ConversionError(f'{ann_dir} holds no .xml file')
    files = []
    for stem in stems:
        path = osp.join(ann_dir, f'{stem}.xml')
        if not osp.isfile(path):
            report.skip(f'Annotations/{stem}.xml', f'not found (listed in --split {split})')
            continue
        files.append(_VocFile(path, f'Annotations/{stem}.xml'))
    found = sorted({obj[0] for voc in files for obj in voc.objects})
    if classes is None:
        classes = found
        report.notes.append(f'categories are the sorted class names found ({", ".join(found)}'
                            '); give --classes to fix them for every split')
    categories = make_categories(list(classes))
    cat_ids = {c['name']: c['id'] for c in categories}
    builder = CocoBuilder(categories, report)
    mismatched = []
    for voc in files:
        for name, line, _, _ in voc.objects:
            if name not in cat_ids:
                raise ConversionError(f'{voc.path} line {line}: class {name!r} is not in '
                                      f'--classes ({", ".join(classes)})')
        image = f'JPEGImages/{voc.file_name}'
        if not osp.isfile(osp.join(img_dir, voc.file_name)):
            report.skip(image, f'image file not found, named in {voc.name}')
            continue
        try:
            header_size = read_image_size(osp.join(img_dir, voc.file_name))
        except UnreadableImage as exc:
            report.skip(image, exc.reason)
            continue
        size = voc.size or header_size
        if size != header_size:
            mismatched.append(f'{voc.name} ({size[0]}x{size[1]}, image {header_size[0]}x'
                              f'{header_size[1]})')
        image_id = builder.add_image(voc.file_name, *size)
        for name, line, difficult, (xmin, ymin, xmax, ymax) in voc.objects:
            builder.add_box(image_id, cat_ids[name], (xmin - 1, ymin - 1, xmax - 1, ymax - 1),
                            f'{voc.name} line {line}', iscrowd=int(difficult))
    if mismatched:
        report.notes.append(f'{len(mismatched)} <size> differ from the image as loaded (the '
                            f'XML size is used): {listing(mismatched)}')
    if not builder.images:
        raise ConversionError(f'no image left in {voc_root} ({report.skipped_line()})')
    return builder.coco(), report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('voc_root', help='folder holding Annotations/ and JPEGImages/')
    parser.add_argument('--out', required=True, help='COCO file to write')
    parser.add_argument('--split', default=None,
                        help='convert only the ids of ImageSets/Main/SPLIT.txt')
    parser.add_argument('--classes', nargs='+', default=None,
                        help='class names in category id order (default: the sorted names '
                        'found)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        coco, report = voc_to_coco(args.voc_root, args.split, args.classes)
        write_coco(coco, args.out)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f'voc_to_coco: error: {exc}')
    print(report.summary('voc_to_coco', args.out, coco))
    return coco, report


if __name__ == '__main__':
    main()
