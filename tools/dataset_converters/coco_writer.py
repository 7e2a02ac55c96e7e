"""What the converters to COCO share (``images_to_coco``, ``voc_to_coco``, ``yolo_to_coco``):
listing image files, reading an image's size from its header, clipping and checking a box,
assembling and writing the COCO file, and the one-paragraph summary with the skips.

Not a command-line tool. Example (from a converter)::

    builder = CocoBuilder(make_categories(['car', 'person']))
    image_id = builder.add_image('a/0001.jpg', 640, 480)
    builder.add_box(image_id, 1, (10, 20, 110, 220), 'a/0001.txt line 1')
    builder.report.skip('b.jpg', 'empty file')
    write_coco(builder.coco(), 'out.json')
    print(builder.report.summary('yolo_to_coco', 'out.json', builder.coco()))

Image sizes are what ssl_det's (and mmcv's) ``LoadImageFromFile`` will produce with its
default ``color_type='color'``: OpenCV turns an image by its EXIF orientation, so for
orientations 5 to 8 (a quarter turn) width and height are swapped from the stored ones
(checked against OpenCV 5.1 for JPEG, PNG, WebP and TIFF). Only the header is read: the
rare PNG whose eXIf chunk comes after its pixel data keeps its stored size.
"""
import json
import math
import os
import os.path as osp
import posixpath
import tempfile
import warnings
from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
EXIF_ORIENTATION = 0x0112
# EXIF orientations that turn the image a quarter (5: transpose, 6: 90 deg clockwise,
# 7: transverse, 8: 90 deg counter-clockwise): the loaded image is height x width.
QUARTER_TURNS = (5, 6, 7, 8)
LISTED = 20  # files named in a summary line before '... and N more'


class ConversionError(ValueError):
    """A user error in a converter's input (a CLI prints it after ``tool: error:``)."""


class UnreadableImage(Exception):
    """An image file whose size cannot be read from its header; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_extensions(extensions: Iterable[str]) -> Tuple[str, ...]:
    """Lower-case extensions with their leading dot (``'JPG'`` -> ``'.jpg'``)."""
    out = tuple(e.lower() if e.startswith('.') else f'.{e.lower()}' for e in extensions)
    if not out:
        raise ConversionError('no image extensions given')
    return out


def relative_name(path: str) -> str:
    """A relative path as a COCO ``file_name``: forward slashes, no ``./`` or ``a/../``."""
    return posixpath.normpath(path.replace('\\', '/'))


def list_files(folder: str, extensions: Sequence[str]) -> List[str]:
    """The files under ``folder`` (recursively, following folder links once) whose
    extension is one of ``extensions`` (any case), as sorted relative names with forward
    slashes."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder}: no such folder')
    extensions = normalize_extensions(extensions)
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = osp.realpath(root)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        rel_root = osp.relpath(root, folder)
        for name in files:
            if osp.splitext(name)[1].lower() in extensions:
                found.append(relative_name(osp.join(rel_root, name)))
    return sorted(found)


def _tail_truncation(path: str) -> Optional[str]:
    """ssl_det's loader rejects a JPEG/PNG without its end marker; so do we (reading the
    first and last bytes only)."""
    from ssl_det.datasets.unreadable import truncation
    with open(path, 'rb') as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(size - 64, len(head)))
        tail = f.read()
    return truncation(head + tail)


def _orientation(img) -> Optional[int]:
    """The EXIF orientation known from the header, without decoding the pixels."""
    if img.format == 'PNG':
        # Pillow's PNG getexif() decodes the whole image to find an eXIf chunk behind the
        # pixel data; one before it is in img.info already.
        raw = img.info.get('exif')
        if not raw:
            return None
        from PIL import Image
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(EXIF_ORIENTATION)
    return img.getexif().get(EXIF_ORIENTATION)


def read_image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of the image at ``path`` as the loader will produce it (after
    EXIF orientation, see the module docstring), read from the file's header; raises
    :class:`UnreadableImage` with the reason for an unreadable, empty, truncated or
    non-image file."""
    from PIL import Image, UnidentifiedImageError
    try:
        if osp.getsize(path) == 0:
            raise UnreadableImage('empty file')
    except OSError as exc:
        raise UnreadableImage(f'cannot be read ({exc.strerror or exc})') from None
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # only the header is read: no decompression bomb
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(path) as img:
                width, height = img.size
                orientation = _orientation(img)
    except UnidentifiedImageError:
        raise UnreadableImage('cannot identify image') from None
    except Exception as exc:  # a broken header: Pillow raises OSError, SyntaxError, ...
        raise UnreadableImage(f'header unreadable ({type(exc).__name__}: {exc})') from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if width <= 0 or height <= 0:
        raise UnreadableImage(f'header gives a size of {width}x{height}')
    try:
        reason = _tail_truncation(path)
    except OSError as exc:
        raise UnreadableImage(f'cannot be read ({exc.strerror or exc})') from None
    if reason:
        raise UnreadableImage(reason)
    if orientation in QUARTER_TURNS:
        width, height = height, width
    return width, height


def _number(value: float):
    """A coordinate for the JSON file: 3 decimals, an int when whole."""
    value = round(float(value), 3)
    return int(value) if value.is_integer() else value


def clip_box(x1: float, y1: float, x2: float, y2: float, width: float,
             height: float) -> Tuple[Optional[List[float]], str]:
    """Clip the box ``(x1, y1, x2, y2)`` (pixels, continuous coordinates) to the image
    ``[0, width] x [0, height]`` and check it.

    Returns:
        tuple: ``(bbox, status)``: ``bbox`` the COCO ``[x, y, w, h]`` (None when dropped),
        ``status`` one of ``'ok'``, ``'clipped'`` (partly outside the image),
        ``'empty'`` (zero or negative width or height, dropped) or ``'outside'`` (entirely
        outside the image, dropped).
    """
    coords = (x1, y1, x2, y2)
    if not all(math.isfinite(v) for v in coords):
        raise ConversionError(f'box {coords} has a value that is not a finite number')
    if x2 <= x1 or y2 <= y1:
        return None, 'empty'
    cx1, cx2 = (min(max(v, 0.0), width) for v in (x1, x2))
    cy1, cy2 = (min(max(v, 0.0), height) for v in (y1, y2))
    cx1, cy1, cx2, cy2 = (_number(v) for v in (cx1, cy1, cx2, cy2))
    if cx2 <= cx1 or cy2 <= cy1:
        return None, 'outside'
    status = 'ok' if (cx1, cy1, cx2, cy2) == tuple(_number(v) for v in coords) else 'clipped'
    return [cx1, cy1, _number(cx2 - cx1), _number(cy2 - cy1)], status


def make_categories(names: Sequence[str]) -> List[dict]:
    """COCO categories with ids 1..K in the order of ``names`` (no duplicates)."""
    duplicated = sorted(name for name, n in Counter(names).items() if n > 1)
    if duplicated:
        raise ConversionError(f'class names given more than once: {", ".join(duplicated)}')
    if not names:
        raise ConversionError('no class names')
    return [dict(id=i + 1, name=name) for i, name in enumerate(names)]


def load_coco(path: str, what: str = 'COCO file') -> dict:
    """A COCO file's content, with errors that name the file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path} not found')
    try:
        with open(path, encoding='utf-8') as f:
            content = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConversionError(f'{path} is not a JSON file ({exc})') from None
    if not isinstance(content, dict):
        raise ConversionError(f'{path} is not a COCO file (no top-level object)')
    return content


def listing(items: Sequence[str]) -> str:
    """Up to 20 names, comma-separated, then how many more."""
    shown = ', '.join(items[:LISTED])
    return shown + (f' ... and {len(items) - LISTED} more' if len(items) > LISTED else '')


def plural(n: int, word: str) -> str:
    """``'1 box'``, ``'2 boxes'``, ``'3 categories'``, ``'4 images'``."""
    if n == 1:
        return f'{n} {word}'
    if word.endswith(('s', 'x')):
        return f'{n} {word}es'
    return f'{n} {word[:-1]}ies' if word.endswith('y') else f'{n} {word}s'


class Report:
    """What a conversion kept, changed and left out, for the summary paragraph.

    Attributes:
        skipped (list): ``(file, reason)`` of the files left out (unreadable images,
            missing images, label files without an image, ...).
        clipped (list): where a box partly outside its image was clipped (file, line).
        dropped (list): ``(where, reason)`` of boxes dropped (empty, or outside the image).
        excluded (int): images left out because a labeled file lists them.
        notes (list): other sentences for the summary.
    """

    def __init__(self) -> None:
        self.skipped: List[Tuple[str, str]] = []
        self.clipped: List[str] = []
        self.dropped: List[Tuple[str, str]] = []
        self.excluded = 0
        self.notes: List[str] = []

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))

    def skipped_line(self, kind: str = 'file') -> str:
        """``'skipped 2 unreadable files: a.jpg (empty file), b.png (...)'``, or ``''``."""
        if not self.skipped:
            return ''
        return (f'skipped {plural(len(self.skipped), kind)}: '
                + listing([f'{name} ({reason})' for name, reason in self.skipped]))

    def summary(self, tool: str, out: str, coco: dict, with_boxes: bool = True,
                skipped_kind: str = 'file') -> str:
        """One paragraph: images, boxes per class (``with_boxes``), changes, skips."""
        images, anns, categories = coco['images'], coco['annotations'], coco['categories']
        parts = [f'{tool}: wrote {out}: {plural(len(images), "image")}']
        if with_boxes:
            boxes = Counter(a['category_id'] for a in anns)
            per_class = ', '.join(f'{c["name"]} {boxes[c["id"]]}' for c in categories)
            crowd = sum(1 for a in anns if a.get('iscrowd'))
            parts[0] += (f', {plural(len(anns), "box")} ({per_class})'
                         + (f', {crowd} of them iscrowd=1 (ignored in training)'
                            if crowd else ''))
        else:
            parts[0] += (f' without annotations, {plural(len(categories), "category")} '
                         f'({", ".join(str(c.get("name")) for c in categories)})')
        if self.excluded:
            parts.append(f'excluded {plural(self.excluded, "image")} listed in the labeled '
                         'file(s)')
        if self.clipped:
            parts.append(f'clipped {plural(len(self.clipped), "box")} partly outside its '
                         f'image to it: {listing(self.clipped)}')
        if self.dropped:
            parts.append(f'dropped {plural(len(self.dropped), "box")}: '
                         + listing([f'{where} ({why})' for where, why in self.dropped]))
        parts.extend(self.notes)
        line = self.skipped_line(skipped_kind)
        if line:
            parts.append(line)
        return '; '.join(parts) + '.'


class CocoBuilder:
    """Collects a COCO file's images and boxes with ids 1..N in the order added; boxes
    are clipped and checked by :func:`clip_box`, with what changed in ``self.report``.

    Args:
        categories (list[dict]): The file's ``categories``.
        report (Report, optional): Where to count; default a new one.
    """

    def __init__(self, categories: List[dict], report: Optional[Report] = None) -> None:
        self.categories = categories
        self.images: List[dict] = []
        self.annotations: List[dict] = []
        self.report = report if report is not None else Report()
        self._sizes: Dict[int, Tuple[int, int]] = {}

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append(dict(id=image_id, file_name=file_name, width=int(width),
                                height=int(height)))
        self._sizes[image_id] = (width, height)
        return image_id

    def add_box(self, image_id: int, category_id: int, xyxy: Sequence[float], where: str,
                iscrowd: int = 0) -> Optional[dict]:
        """Clip and check the box ``xyxy`` (pixels) of image ``image_id``; add it unless it
        is empty or outside the image. ``where`` names it in the report (file, line)."""
        width, height = self._sizes[image_id]
        try:
            bbox, status = clip_box(*(float(v) for v in xyxy), width, height)
        except ConversionError as exc:
            raise ConversionError(f'{where}: {exc}') from None
        if bbox is None:
            self.report.dropped.append(
                (where, 'zero or negative width or height' if status == 'empty'
                 else f'entirely outside the {width}x{height} image'))
            return None
        if status == 'clipped':
            self.report.clipped.append(where)
        ann = dict(id=len(self.annotations) + 1, image_id=image_id, category_id=category_id,
                   bbox=bbox, area=_number(bbox[2] * bbox[3]), iscrowd=int(iscrowd))
        self.annotations.append(ann)
        return ann

    def coco(self) -> dict:
        return dict(images=self.images, annotations=self.annotations,
                    categories=self.categories)


def check_output(out: str, inputs: Iterable[str]) -> None:
    """Refuse to write ``out`` over one of the input files."""
    for path in inputs:
        if path and osp.exists(path) and osp.exists(out) and osp.samefile(out, path):
            raise ConversionError(f'--out {out} is one of the input files; write elsewhere')


def write_coco(coco: dict, out: str) -> str:
    """Write ``coco`` to ``out`` (folders made; written whole or not at all). A file
    without images is an error and nothing is written."""
    if not coco.get('images'):
        raise ConversionError(f'no image to write to {out}')
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.json', dir=folder)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(coco, f, ensure_ascii=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private to its owner
        os.replace(tmp, out)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return out
