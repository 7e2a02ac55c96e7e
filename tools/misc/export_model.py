"""Export a trained ssl_det checkpoint as a plain MMDetection checkpoint and config.

    python tools/misc/export_model.py CHECKPOINT --config CONFIG --out DIR
        [--which teacher|student] [--name NAME] [--cfg-options k=v ...]
        [--trust-checkpoint]

Writes DIR/NAME.pth (the chosen network's weights under mmdet's keys, classes in
``meta.dataset_meta``; loads with ``torch.load(weights_only=True)``) and DIR/NAME.py (the
detector with mmdet's data preprocessor, the config's test pipeline,
``default_scope='mmdet'``), which MMDetection loads without ssl_det. NAME defaults to the
config's name plus ``_teacher`` / ``_student``.

--which picks the network of a teacher–student checkpoint (default: the config's
``predict_on``, i.e. the network ssl_det evaluates, usually the teacher). A supervised
checkpoint holds one detector: --which is then ignored and NAME has no suffix.
Detectors that need ssl_det's own modules (the point-cloud ``PillarDetector``) are refused.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmengine.config import DictAction  # noqa: E402

from ssl_det.utils.checkpoint import trust_checkpoints  # noqa: E402
from ssl_det.utils.export import ExportError, export_model  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='the ssl_det checkpoint (e.g. work_dirs/.../iter_N.pth)')
    parser.add_argument('--config', required=True,
                        help='the config the checkpoint was trained with')
    parser.add_argument('--which', choices=['teacher', 'student'],
                        help="network of a teacher-student checkpoint (default: the config's "
                             'predict_on); ignored for a supervised checkpoint')
    parser.add_argument('--out', required=True, help='folder for the .pth and .py files')
    parser.add_argument('--name', help='file name without extension (default: the '
                                       "config's name, plus _teacher / _student)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. '
                             'model.detector.test_cfg.rcnn.score_thr=0.3)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a checkpoint that needs full unpickling (can run code)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.trust_checkpoint:
        trust_checkpoints(True)
    try:
        written = export_model(args.checkpoint, args.config, args.out, which=args.which,
                               cfg_options=args.cfg_options, name=args.name)
    except (ExportError, FileNotFoundError) as exc:
        sys.exit(f'export_model: error: {exc}')
    for note in written['notes']:
        print(f'note: {note}')
    if written['which'] is None and args.which is not None:
        print(f'note: {args.checkpoint} is a plain detector checkpoint; --which '
              f'{args.which} was ignored')
    network = f"the {written['which']}" if written['which'] else 'the detector'
    print(f"exported {network} ({written['num_weights']} tensors, "
          f"{len(written['classes'])} classes) for plain MMDetection:")
    print(f"  checkpoint: {written['checkpoint']}")
    print(f"  config:     {written['config']}")
    print('run it on a folder of images (predictions in outputs/preds, drawings in '
          'outputs/vis):')
    print(f"  {written['command']}")
    return written


if __name__ == '__main__':
    main()
