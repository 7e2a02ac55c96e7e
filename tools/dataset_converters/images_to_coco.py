"""Make a COCO file of unlabeled images (no annotations) from a folder of your own images.

Example (the unlabeled pool beside a labeled file, leaving out the labeled images):
    python tools/dataset_converters/images_to_coco.py data/mine/images \
        --categories-from data/mine/annotations/labeled.json \
        --exclude data/mine/annotations/labeled.json \
        --out data/mine/annotations/unlabeled.json

The folder is searched recursively; images get ids 1..N in the sorted order of their paths,
``file_name`` is the path relative to IMAGE_DIR with forward slashes (so the config's
``data_prefix=dict(img=IMAGE_DIR)``), and ``categories`` are copied from the labeled file
(ssl_det checks that the labeled and unlabeled files agree on them). Width and height are
read from each file's header without decoding it, as the loader will see the image (an
EXIF orientation of 5 to 8 swaps them). Files that are empty, not an image, truncated or
whose header cannot be read are skipped and named in the summary.

``--exclude LABELED.json`` (repeatable) leaves out every image whose path relative to
IMAGE_DIR equals a ``file_name`` of that file (after turning backslashes into slashes and
removing ``./``; an absolute ``file_name`` inside IMAGE_DIR is made relative to it). Names
are compared whole, never by basename alone: the labeled file must name its images
relative to the same IMAGE_DIR. An exclude file that matches none of the images is reported.
"""
import argparse
import os.path as osp
import sys
from typing import Iterable, List, Sequence, Set, Tuple

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from tools.dataset_converters.coco_writer import (IMAGE_EXTENSIONS,  # noqa: E402
                                                  CocoBuilder, ConversionError, Report,
                                                  UnreadableImage, check_output, list_files,
                                                  load_coco, normalize_extensions,
                                                  plural, read_image_size, relative_name,
                                                  write_coco)


def _labeled_names(labeled: dict, image_dir: str) -> Set[str]:
    root = osp.abspath(image_dir)
    names = set()
    for img in labeled.get('images') or []:
        name = str(img.get('file_name', ''))
        if osp.isabs(name) and osp.abspath(name).startswith(root + osp.sep):
            name = osp.relpath(name, root)
        names.add(relative_name(name))
    return names


def images_to_coco(image_dir: str, categories: List[dict], exclude: Iterable[str] = (),
                   extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Tuple[dict, Report]:
    """The COCO content of the unlabeled images under ``image_dir``.

    Args:
        image_dir (str): The image folder (searched recursively).
        categories (list[dict]): The file's ``categories`` (from the labeled file).
        exclude (Iterable[str]): Labeled COCO files whose images are left out (see the
            module docstring for how names are compared).
        extensions (Sequence[str]): Image file extensions (any case).

    Returns:
        tuple: ``(coco, report)``: the COCO dict (``images``, ``annotations=[]``,
        ``categories``) and a :class:`Report` (``skipped``: ``(file, reason)`` of the
        unreadable files; ``excluded``: how many images the labeled files list).

    Raises:
        ConversionError: No categories, or no image left.
        FileNotFoundError: No such folder or exclude file.
    """
    if not categories:
        raise ConversionError('no categories given: the unlabeled file needs the labeled '
                              "file's categories")
    extensions = normalize_extensions(extensions)
    files = list_files(image_dir, extensions)
    builder = CocoBuilder(list(categories))
    report = builder.report
    excluded: Set[str] = set()
    for path in exclude:
        names = _labeled_names(load_coco(path, 'exclude file'), image_dir)
        matched = names.intersection(files)
        if names and not matched:
            report.notes.append(
                f'--exclude {path} matched none of its {len(names)} images (is its '
                f'file_name relative to {image_dir}?)')
        excluded |= matched
    for name in files:
        if name in excluded:
            report.excluded += 1
            continue
        try:
            width, height = read_image_size(osp.join(image_dir, name))
        except UnreadableImage as exc:
            report.skip(name, exc.reason)
            continue
        builder.add_image(name, width, height)
    if not builder.images:
        why = [f'{plural(len(files), "file")} with extensions {" ".join(extensions)}']
        if report.excluded:
            why.append(f'{report.excluded} excluded')
        if report.skipped:
            why.append(report.skipped_line('unreadable file'))
        raise ConversionError(f'no image left in {image_dir} ({"; ".join(why)})')
    return builder.coco(), report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image_dir', help='folder of images (searched recursively)')
    parser.add_argument('--categories-from', required=True, metavar='LABELED.json',
                        help="COCO file whose categories the unlabeled file gets")
    parser.add_argument('--out', required=True, help='COCO file to write')
    parser.add_argument('--exclude', action='append', default=[], metavar='LABELED.json',
                        help='leave out the images of this COCO file (repeatable)')
    parser.add_argument('--extensions', nargs='+', default=list(IMAGE_EXTENSIONS),
                        help=f'image file extensions, any case (default: '
                        f'{" ".join(IMAGE_EXTENSIONS)})')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        check_output(args.out, [args.categories_from, *args.exclude])
        categories = load_coco(args.categories_from, '--categories-from file').get(
            'categories')
        if not categories:
            raise ConversionError(f'{args.categories_from} has no categories')
        coco, report = images_to_coco(args.image_dir, categories, args.exclude,
                                      args.extensions)
        write_coco(coco, args.out)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f'images_to_coco: error: {exc}')
    print(report.summary('images_to_coco', args.out, coco, with_boxes=False,
                         skipped_kind='unreadable file'))
    return coco, report


if __name__ == '__main__':
    main()
