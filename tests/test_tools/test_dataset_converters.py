"""The converters of own data to COCO: images_to_coco, voc_to_coco, yolo_to_coco."""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
from PIL import Image

from tools.dataset_converters import images_to_coco as images_tool
from tools.dataset_converters import voc_to_coco as voc_tool
from tools.dataset_converters import yolo_to_coco as yolo_tool
from tools.dataset_converters.coco_writer import ConversionError, clip_box, read_image_size

CATS = [dict(id=1, name='car', supercategory='vehicle'), dict(id=2, name='person')]


def _img(path, width, height, orientation=None, fmt=None):
    """A small image file (random pixels) of ``width`` x ``height`` as stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs['exif'] = exif
    Image.fromarray(pixels).save(path, format=fmt, **kwargs)
    return path


def _coco_file(path, file_names=(), categories=CATS):
    path.write_text(json.dumps(dict(
        images=[dict(id=i + 1, file_name=n, width=4, height=4) for i, n in enumerate(file_names)],
        annotations=[], categories=categories)))
    return path


def _names(coco):
    return [img['file_name'] for img in coco['images']]


# images_to_coco ----------------------------------------------------------------------------

@pytest.fixture
def image_dir(tmp_path):
    root = tmp_path / 'images'
    _img(root / 'b.png', 20, 10)
    _img(root / 'a.jpg', 8, 6)
    _img(root / 'sub' / 'c.JPG', 5, 7)
    _img(root / 'sub' / 'deeper' / 'd.bmp', 3, 4)
    (root / 'notes.txt').write_text('not an image extension: not even looked at')
    return root


def test_images_sizes_ids_recursion_deterministic(image_dir):
    coco, report = images_tool.images_to_coco(str(image_dir), CATS)
    assert coco['images'] == [
        dict(id=1, file_name='a.jpg', width=8, height=6),
        dict(id=2, file_name='b.png', width=20, height=10),
        dict(id=3, file_name='sub/c.JPG', width=5, height=7),
        dict(id=4, file_name='sub/deeper/d.bmp', width=3, height=4)]
    assert coco['annotations'] == [] and coco['categories'] == CATS
    assert report.skipped == [] and report.excluded == 0
    assert images_tool.images_to_coco(str(image_dir), CATS)[0] == coco
    only_png, _ = images_tool.images_to_coco(str(image_dir), CATS, extensions=['PNG'])
    assert _names(only_png) == ['b.png']


def test_images_exif_orientation_gives_the_loaded_size(tmp_path):
    import mmcv
    root = tmp_path / 'images'
    turned = _img(root / 'turned.jpg', 30, 20, orientation=6)  # stored 30 wide, shown 20
    upside = _img(root / 'upside.jpg', 30, 20, orientation=3)  # half turn: same size
    png = _img(root / 'turned.png', 30, 20, orientation=8)  # eXIf chunk
    webp = _img(root / 'turned.webp', 30, 20, orientation=5)
    assert Image.open(turned).getexif()[0x0112] == 6
    assert read_image_size(str(turned)) == (20, 30)
    assert read_image_size(str(upside)) == (30, 20)
    # what ssl_det's / mmcv's LoadImageFromFile decodes (cv2, flag='color'): height x width
    for path in (turned, upside, png, webp):
        width, height = read_image_size(str(path))
        assert mmcv.imfrombytes(path.read_bytes(), flag='color').shape[:2] == (height, width)
    coco, _ = images_tool.images_to_coco(str(root), CATS)
    assert [(i['width'], i['height']) for i in coco['images']] == \
        [(20, 30), (20, 30), (20, 30), (30, 20)]


def test_images_exclude_by_whole_relative_path(image_dir, tmp_path, capsys):
    labeled = _coco_file(tmp_path / 'labeled.json', ['a.jpg', './sub\\c.JPG', 'd.bmp'])
    other = _coco_file(tmp_path / 'other.json', ['elsewhere/a.jpg'])
    coco, report = images_tool.images_to_coco(str(image_dir), CATS, exclude=[str(labeled)])
    # d.bmp lies in sub/deeper/: a bare basename does not match it
    assert _names(coco) == ['b.png', 'sub/deeper/d.bmp']
    assert [i['id'] for i in coco['images']] == [1, 2]
    assert report.excluded == 2
    out = tmp_path / 'unlabeled.json'
    images_tool.main([str(image_dir), '--categories-from', str(labeled), '--out', str(out),
                      '--exclude', str(labeled), '--exclude', str(other)])
    printed = capsys.readouterr().out
    assert 'excluded 2 images listed in the labeled file(s)' in printed
    assert f'--exclude {other} matched none of its 1 images' in printed
    assert _names(json.loads(out.read_text())) == ['b.png', 'sub/deeper/d.bmp']


def test_images_unreadable_files_skipped_and_named(image_dir, tmp_path, capsys):
    (image_dir / 'empty.jpg').write_bytes(b'')
    (image_dir / 'fake.png').write_text('this is not a PNG')
    good = _img(tmp_path / 'good.jpg', 9, 9).read_bytes()
    (image_dir / 'trunc.jpg').write_bytes(good[:-20])  # header intact, end cut
    coco, report = images_tool.images_to_coco(str(image_dir), CATS)
    assert _names(coco) == ['a.jpg', 'b.png', 'sub/c.JPG', 'sub/deeper/d.bmp']
    assert report.skipped == [('empty.jpg', 'empty file'), ('fake.png', 'cannot identify image'),
                              ('trunc.jpg', 'truncated JPEG (no end-of-image marker)')]
    labeled = _coco_file(tmp_path / 'labeled.json')
    images_tool.main([str(image_dir), '--categories-from', str(labeled), '--out',
                      str(tmp_path / 'u.json')])
    assert ('skipped 3 unreadable files: empty.jpg (empty file), fake.png (cannot identify '
            'image), trunc.jpg (truncated JPEG') in capsys.readouterr().out


def test_images_errors_write_nothing(tmp_path):
    root = tmp_path / 'images'
    root.mkdir()
    (root / 'empty.jpg').write_bytes(b'')
    labeled = _coco_file(tmp_path / 'labeled.json', ['x.jpg'])
    out = tmp_path / 'u.json'
    with pytest.raises(SystemExit, match=r'no image left .*empty\.jpg \(empty file\)'):
        images_tool.main([str(root), '--categories-from', str(labeled), '--out', str(out)])
    _img(root / 'ok.jpg', 4, 4)
    no_cats = _coco_file(tmp_path / 'nocats.json', categories=[])
    with pytest.raises(SystemExit, match='nocats.json has no categories'):
        images_tool.main([str(root), '--categories-from', str(no_cats), '--out', str(out)])
    with pytest.raises(SystemExit, match='is one of the input files'):
        images_tool.main([str(root), '--categories-from', str(labeled), '--out',
                          str(labeled)])
    assert not out.exists()
    assert json.loads(labeled.read_text())['images'][0]['file_name'] == 'x.jpg'
    assert sorted(os.listdir(tmp_path)) == ['images', 'labeled.json', 'nocats.json']


# voc_to_coco -------------------------------------------------------------------------------

def _voc_xml(path, filename, objects, size=None):
    """Write a VOC XML file; returns the line number of each object's ``<name>``."""
    lines = ['<annotation>', '  <folder>VOC</folder>']
    if filename is not None:
        lines.append(f'  <filename>{filename}</filename>')
    if size is not None:
        lines += ['  <size>', f'    <width>{size[0]}</width>', f'    <height>{size[1]}</height>',
                  '    <depth>3</depth>', '  </size>']
    name_lines = []
    for name, box, *difficult in objects:
        lines += ['  <object>']
        name_lines.append(len(lines) + 1)
        lines += [f'    <name>{name}</name>', '    <pose>Unspecified</pose>',
                  f'    <difficult>{difficult[0] if difficult else 0}</difficult>',
                  '    <bndbox>']
        lines += [f'      <{t}>{v}</{t}>' for t, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), box)]
        lines += ['    </bndbox>', '  </object>']
    lines.append('</annotation>')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(lines) + '\n')
    return name_lines


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / 'VOC'
    _img(root / 'JPEGImages' / '0001.jpg', 100, 80)
    _img(root / 'JPEGImages' / '0002.jpg', 60, 40)
    _voc_xml(root / 'Annotations' / '0002.xml', '0002.jpg', [('car', (1, 1, 60, 40))],
             size=(60, 40))
    _voc_xml(root / 'Annotations' / '0001.xml', '0001.jpg',
             [('person', (11, 21, 50, 60)), ('car', (30, 5, 41, 16), 1)], size=(100, 80))
    return root


def test_voc_coordinates_categories_ids(voc_root):
    coco, report = voc_tool.voc_to_coco(str(voc_root))
    assert coco['images'] == [dict(id=1, file_name='0001.jpg', width=100, height=80),
                              dict(id=2, file_name='0002.jpg', width=60, height=40)]
    assert coco['categories'] == [dict(id=1, name='car'), dict(id=2, name='person')]
    # mmdet's VOC convention: x = xmin - 1, w = xmax - xmin (and the same for y, h)
    assert coco['annotations'] == [
        dict(id=1, image_id=1, category_id=2, bbox=[10, 20, 39, 39], area=1521, iscrowd=0),
        dict(id=2, image_id=1, category_id=1, bbox=[29, 4, 11, 11], area=121, iscrowd=1),
        dict(id=3, image_id=2, category_id=1, bbox=[0, 0, 59, 39], area=2301, iscrowd=0)]
    assert report.skipped == report.dropped == report.clipped == []
    assert 'give --classes' in report.notes[0]


def test_voc_classes_order_and_unknown_class(voc_root, tmp_path):
    coco, _ = voc_tool.voc_to_coco(str(voc_root), classes=['person', 'car', 'bus'])
    assert coco['categories'] == [dict(id=1, name='person'), dict(id=2, name='car'),
                                  dict(id=3, name='bus')]
    assert [a['category_id'] for a in coco['annotations']] == [1, 2, 2]
    lines = _voc_xml(voc_root / 'Annotations' / '0003.xml', '0001.jpg',
                     [('car', (1, 1, 5, 5)), ('dog', (1, 1, 5, 5))])
    xml = voc_root / 'Annotations' / '0003.xml'
    assert xml.read_text().splitlines()[lines[1] - 1].strip() == '<name>dog</name>'
    with pytest.raises(ConversionError, match=f"0003.xml line {lines[1]}: class 'dog' is not"):
        voc_tool.voc_to_coco(str(voc_root), classes=['person', 'car'])
    out = tmp_path / 'voc.json'
    with pytest.raises(SystemExit, match=f"voc_to_coco: error: .*0003.xml line {lines[1]}"):
        voc_tool.main([str(voc_root), '--out', str(out), '--classes', 'person', 'car'])
    assert not out.exists()


def test_voc_missing_image_skipped_and_named(voc_root, tmp_path, capsys):
    _voc_xml(voc_root / 'Annotations' / '0000.xml', 'gone.jpg', [('car', (1, 1, 5, 5))],
             size=(10, 10))
    out = tmp_path / 'voc.json'
    voc_tool.main([str(voc_root), '--out', str(out)])
    coco = json.loads(out.read_text())
    assert _names(coco) == ['0001.jpg', '0002.jpg'] and len(coco['annotations']) == 3
    assert ('skipped 1 file: JPEGImages/gone.jpg (image file not found, named in '
            'Annotations/0000.xml)') in capsys.readouterr().out


def test_voc_boxes_clipped_and_dropped(voc_root):
    lines = _voc_xml(voc_root / 'Annotations' / '0001.xml', '0001.jpg',
                     [('car', (91, -4, 120, 30)),   # partly outside: clipped
                      ('car', (150, 10, 160, 20)),  # entirely outside: dropped
                      ('car', (20, 10, 20, 30)),    # zero width: dropped
                      ('car', (2, 2, 11, 11))], size=(100, 80))
    coco, report = voc_tool.voc_to_coco(str(voc_root))
    assert [a['bbox'] for a in coco['annotations'] if a['image_id'] == 1] == \
        [[90, 0, 10, 29], [1, 1, 9, 9]]
    assert report.clipped == [f'Annotations/0001.xml line {lines[0]}']
    assert report.dropped == [
        (f'Annotations/0001.xml line {lines[1]}', 'entirely outside the 100x80 image'),
        (f'Annotations/0001.xml line {lines[2]}', 'zero or negative width or height')]
    summary = report.summary('voc_to_coco', 'x.json', coco)
    assert 'clipped 1 box partly outside its image' in summary
    assert 'dropped 2 boxes' in summary


def test_voc_split_file_and_size_from_header(voc_root):
    main = voc_root / 'ImageSets' / 'Main'
    main.mkdir(parents=True)
    (main / 'train.txt').write_text('0002\n\n')
    coco, _ = voc_tool.voc_to_coco(str(voc_root), split='train')
    assert _names(coco) == ['0002.jpg']
    with pytest.raises(FileNotFoundError, match='ImageSets/Main/val.txt not found'):
        voc_tool.voc_to_coco(str(voc_root), split='val')
    _voc_xml(voc_root / 'Annotations' / '0002.xml', None, [('car', (1, 1, 60, 40))],
             size=(0, 0))  # no <filename>: 0002.jpg; zero size: the header's
    coco, _ = voc_tool.voc_to_coco(str(voc_root), split='train')
    assert coco['images'] == [dict(id=1, file_name='0002.jpg', width=60, height=40)]


def test_unreadable_images_skipped_and_named_in_voc_and_yolo(voc_root, yolo):
    """An image file that is there but cannot be read is left out with its boxes and named
    in the report, by voc_to_coco (as a missing one) and by yolo_to_coco."""
    (voc_root / 'JPEGImages' / '0002.jpg').write_bytes(b'')
    coco, report = voc_tool.voc_to_coco(str(voc_root))
    assert _names(coco) == ['0001.jpg']
    assert [a['image_id'] for a in coco['annotations']] == [1, 1]
    assert report.skipped == [('JPEGImages/0002.jpg', 'empty file')]
    images, labels, _ = yolo
    (images / 'a.jpg').write_text('not an image')
    coco, report = yolo_tool.yolo_to_coco(str(images), str(labels), ['car', 'person', 'bike'])
    assert _names(coco) == ['background.jpg', 'sub/b.png']
    assert [a['category_id'] for a in coco['annotations']] == [3]
    assert report.skipped == [('a.jpg', 'cannot identify image')]


# yolo_to_coco ------------------------------------------------------------------------------

@pytest.fixture
def yolo(tmp_path):
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    _img(images / 'a.jpg', 200, 100)
    _img(images / 'sub' / 'b.png', 50, 40)
    _img(images / 'background.jpg', 10, 10)
    labels.mkdir()
    (labels / 'a.txt').write_text('1 0.5 0.5 0.2 0.4\n\n0 0.25 0.1 0.1 0.2\n')
    (labels / 'sub').mkdir()
    (labels / 'sub' / 'b.txt').write_text('2 0.5 0.5 1 1\n')
    classes = tmp_path / 'classes.txt'
    classes.write_text('car\nperson\nbike\n\n\n')
    return images, labels, classes


def test_yolo_exact_boxes_and_background(yolo, tmp_path, capsys):
    images, labels, classes = yolo
    out = tmp_path / 'yolo.json'
    coco, report = yolo_tool.main([str(images), str(labels), '--classes-file', str(classes),
                                   '--out', str(out)])
    assert json.loads(out.read_text()) == coco
    assert coco['categories'] == [dict(id=1, name='car'), dict(id=2, name='person'),
                                  dict(id=3, name='bike')]
    assert coco['images'] == [dict(id=1, file_name='a.jpg', width=200, height=100),
                              dict(id=2, file_name='background.jpg', width=10, height=10),
                              dict(id=3, file_name='sub/b.png', width=50, height=40)]
    assert [(a['image_id'], a['category_id'], a['bbox'], a['area'])
            for a in coco['annotations']] == [(1, 2, [80, 30, 40, 40], 1600),
                                              (1, 1, [40, 0, 20, 20], 400),
                                              (3, 3, [0, 0, 50, 40], 2000)]
    assert report.skipped == [] and report.clipped == [] and report.dropped == []
    printed = capsys.readouterr().out
    assert '3 images, 3 boxes (car 1, person 1, bike 1)' in printed
    assert '1 image(s) without a label file, kept as background images (no box): ' \
        'background.jpg' in printed


def test_yolo_label_without_image_and_classes_file_in_label_dir(yolo, tmp_path, capsys):
    images, labels, _ = yolo
    (labels / 'orphan.txt').write_text('0 0.5 0.5 0.1 0.1\n')
    classes = labels / 'classes.txt'  # where some YOLO exports put it: not a label file
    classes.write_text('car\nperson\nbike\n')
    yolo_tool.main([str(images), str(labels), '--classes-file', str(classes), '--out',
                    str(tmp_path / 'y.json')])
    assert 'skipped 1 file: orphan.txt (label file without an image)' in \
        capsys.readouterr().out


@pytest.mark.parametrize('line, message', [
    ('3 0.5 0.5 0.1 0.1', 'class index 3 is out of range for the 3 classes'),
    ('-1 0.5 0.5 0.1 0.1', 'class index -1 is out of range'),
    ('1.5 0.5 0.5 0.1 0.1', "class index '1.5' is not an integer"),
    ('car 0.5 0.5 0.1 0.1', "class index 'car' is not an integer"),
    ('0 0.5 0.5 0.1', r'expected 5 values \(class cx cy w h\), got 4'),
    ('0 0.1 0.1 0.2 0.1 0.2 0.2', 'got 7; a segmentation polygon'),
    ('0 0.5 x 0.1 0.1', 'are not 4 finite numbers'),
    ('0 0.5 nan 0.1 0.1', 'are not 4 finite numbers'),
])
def test_yolo_bad_line_names_file_and_line(yolo, tmp_path, line, message):
    images, labels, classes = yolo
    (labels / 'a.txt').write_text(f'1 0.5 0.5 0.2 0.4\n{line}\n')
    label = re.escape(str(labels / 'a.txt'))
    with pytest.raises(ConversionError, match=f'{label} line 2: .*{message}'):
        yolo_tool.yolo_to_coco(str(images), str(labels), ['car', 'person', 'bike'])
    out = tmp_path / 'y.json'
    with pytest.raises(SystemExit, match=f'yolo_to_coco: error: {label} line 2'):
        yolo_tool.main([str(images), str(labels), '--classes-file', str(classes), '--out',
                        str(out)])
    assert not out.exists()


def test_yolo_boxes_clipped_and_dropped(yolo):
    images, labels, _ = yolo
    (labels / 'a.txt').write_text('0 0.95 0.5 0.2 0.2\n'  # 170..210 x 40..60: clipped
                                  '0 1.5 0.5 0.2 0.2\n'   # entirely right of the image
                                  '0 0.5 0.5 0 0.2\n'     # zero width
                                  '0 0.5 0.5 0.1 0.1\n')
    coco, report = yolo_tool.yolo_to_coco(str(images), str(labels), ['car', 'person', 'bike'])
    assert [a['bbox'] for a in coco['annotations'] if a['image_id'] == 1] == \
        [[170, 40, 30, 20], [90, 45, 20, 10]]
    assert report.clipped == ['a.txt line 1']
    assert report.dropped == [('a.txt line 2', 'entirely outside the 200x100 image'),
                              ('a.txt line 3', 'zero or negative width or height')]


def test_yolo_classes_file(tmp_path):
    path = tmp_path / 'classes.txt'
    path.write_text('\ufeffcar\nperson\n\n')
    assert yolo_tool.read_class_names(str(path)) == ['car', 'person']
    path.write_text('car\n\nperson\n')
    with pytest.raises(ConversionError, match='classes.txt line 2: blank line'):
        yolo_tool.read_class_names(str(path))
    path.write_text('car\ncar\n')
    with pytest.raises(ConversionError, match='more than once: car'):
        yolo_tool.read_class_names(str(path))


def test_clip_box():
    assert clip_box(1, 2, 5, 6, 10, 10) == ([1, 2, 4, 4], 'ok')
    assert clip_box(-3, 2, 5, 16, 10, 10) == ([0, 2, 5, 8], 'clipped')
    assert clip_box(10, 2, 15, 6, 10, 10) == (None, 'outside')
    assert clip_box(1, 6, 5, 6, 10, 10) == (None, 'empty')
    assert clip_box(5, 2, 1, 6, 10, 10) == (None, 'empty')


# the written files in ssl_det's CocoDataset -------------------------------------------------

def _load(data_root, ann_file, img_prefix, classes):
    from ssl_det.datasets import CocoDataset
    dataset = CocoDataset(data_root=str(data_root), ann_file=ann_file,
                          data_prefix=dict(img=img_prefix), metainfo=dict(classes=classes),
                          pipeline=[dict(type='LoadImageFromFile'),
                                    dict(type='LoadAnnotations', with_bbox=True)])
    return [dataset[i] for i in range(len(dataset))]


def test_written_files_load_in_coco_dataset(voc_root, yolo, tmp_path):
    voc_tool.main([str(voc_root), '--out', str(voc_root / 'voc.json')])
    first, second = _load(voc_root, 'voc.json', 'JPEGImages/', ('car', 'person'))
    assert first['img'].shape[:2] == (80, 100)
    # the same [xmin - 1, ymin - 1, xmax - 1, ymax - 1] as mmdet's VOCDataset
    np.testing.assert_array_equal(first['gt_bboxes'].numpy(),
                                  [[10, 20, 49, 59], [29, 4, 40, 15]])
    assert first['gt_bboxes_labels'].tolist() == [1, 0]
    assert first['gt_ignore_flags'].tolist() == [False, True]  # difficult
    np.testing.assert_array_equal(second['gt_bboxes'].numpy(), [[0, 0, 59, 39]])

    images, labels, classes = yolo
    _img(images / 'turned.jpg', 40, 20, orientation=6)  # loads as 20 wide, 40 high
    (labels / 'turned.txt').write_text('0 0.5 0.25 0.5 0.5\n')
    yolo_tool.main([str(images), str(labels), '--classes-file', str(classes),
                    '--out', str(tmp_path / 'yolo.json')])
    samples = _load(tmp_path, 'yolo.json', 'images/', ('car', 'person', 'bike'))
    assert [osp.relpath(s['img_path'], images) for s in samples] == \
        ['a.jpg', 'background.jpg', 'sub/b.png', 'turned.jpg']
    np.testing.assert_allclose(samples[0]['gt_bboxes'].numpy(),
                               [[80, 30, 120, 70], [40, 0, 60, 20]])
    assert samples[0]['gt_bboxes_labels'].tolist() == [1, 0]
    assert len(samples[1]['gt_bboxes']) == 0
    turned = samples[3]
    assert turned['img'].shape[:2] == (40, 20)
    np.testing.assert_allclose(turned['gt_bboxes'].numpy(), [[5, 0, 15, 20]])
