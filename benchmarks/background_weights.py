"""Where Soft Teacher's soft background weight falls: on the objects the teacher missed, or
on true background.

For the unlabeled images of a semi-supervised config, the teacher (a stage-1 or a
teacher-student checkpoint) proposes boxes on the weak view (its RPN, the test proposal
config) and scores their background probability, as ``SoftTeacher`` scores the student's
background proposals. The proposals that training would take as background (IoU < 0.5
with every confident pseudo box, not inside an ignored box) are split by the labels the
split hid: on a missed object (IoU >= 0.5 with a hidden box) or on true background
(IoU < 0.3 with every hidden box). The script reports the quantiles of both groups'
background scores and, for ``background_power`` 1-32, their mean weights and the missed
objects' share of the total background weight.

    python benchmarks/background_weights.py configs/deeppcb/soft-teacher_faster-rcnn_r18_fpn_deeppcb_semi.py \\
        work_dirs/deeppcb/seed0/faster-rcnn_r18_fpn_deeppcb_sup_pretrain/iter_1200.pth \\
        --hidden-labels data/deeppcb/annotations/instances_train.json --max-images 200
"""
import argparse
import json
import os
import os.path as osp
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))

POWERS = (1, 2, 4, 8, 16, 32)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def split_background(proposals, bg_scores, confident, ignored, hidden, to_original):
    """``(missed, background)`` background scores of one image's would-be negatives."""
    from mmdet.structures.bbox import bbox_overlaps
    negative = torch.ones(len(proposals), dtype=torch.bool)
    if len(confident):
        negative &= bbox_overlaps(proposals, confident).max(1).values < 0.5
    if len(ignored):
        negative &= ~(bbox_overlaps(proposals, ignored, mode='iof').max(1).values > 0.5)
    hidden_iou = (bbox_overlaps(to_original(proposals), hidden).max(1).values
                  if len(hidden) else proposals.new_zeros(len(proposals)))
    return bg_scores[negative & (hidden_iou >= 0.5)], bg_scores[negative & (hidden_iou < 0.3)]


def summarise(missed, background) -> dict:
    out = dict(missed=len(missed), background=len(background))
    q = torch.tensor(QUANTILES)
    for name, scores in (('missed', missed), ('background', background)):
        out[f'{name}_quantiles'] = dict(zip(map(str, QUANTILES), (
            round(float(v), 4) for v in torch.quantile(scores.double(), q.double())))) \
            if len(scores) else None
    for power in POWERS:
        wm, wb = float((missed ** power).sum()), float((background ** power).sum())
        out[f'power_{power}'] = dict(
            mean_missed=round(float((missed ** power).mean()), 4) if len(missed) else None,
            mean_background=round(float((background ** power).mean()), 4)
            if len(background) else None,
            missed_share=round(wm / (wm + wb), 4) if wm + wb > 0 else None)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--hidden-labels', required=True)
    parser.add_argument('--max-images', type=int, default=200)
    parser.add_argument('--out', help='JSON (default: next to the checkpoint)')
    args = parser.parse_args(argv)
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    import pseudo_label_quality as plq
    from ssl_det.models.soft_teacher import teacher_background_scores
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'ssl_det'))
    datasets = plq.unlabeled_datasets(cfg)
    classes = list(datasets[0].metainfo['classes'])
    items = [(d, i) for d in datasets for i in range(len(d))][:args.max_images]
    hidden, _ = plq.load_hidden_labels(args.hidden_labels, classes)
    paired = plq.pair_hidden_images([(int(d.get_data_info(i)['img_id']),
                                      d.get_data_info(i)['img_path'], d.ann_file)
                                     for d, i in items], hidden, args.hidden_labels)
    model, _ = plq.load_teacher_student(cfg, args.checkpoint, 'cpu')
    loader = torch.utils.data.DataLoader(plq.SeededSamples(items, 0), batch_size=8,
                                         num_workers=2, collate_fn=pseudo_collate)
    confident_tier, ignored_tier = plq.TIERS.index('confident'), plq.TIERS.index('ignored')
    missed, background = [], []
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, True)
            inputs, samples = data['inputs'][plq.BRANCH], data['data_samples'][plq.BRANCH]
            tiers = plq.teacher_tiers(model, inputs, samples)
            feats = model.teacher.extract_feat(inputs)
            proposals = model.teacher.rpn_head.predict(feats, samples, rescale=False)
            scores = teacher_background_scores(
                model.teacher.roi_head, feats, [p.bboxes for p in proposals],
                [s.metainfo for s in samples]).split([len(p) for p in proposals])
            for sample, props, bg, (boxes, _, _, tier) in zip(samples, proposals, scores,
                                                              tiers):
                homography = sample.homography_matrix
                m, b = split_background(
                    props.bboxes, bg, boxes[tier == confident_tier],
                    boxes[tier == ignored_tier],
                    torch.as_tensor(paired[sample.img_id][1]),
                    lambda x: torch.as_tensor(plq.boxes_to_original(x.numpy(), homography)))
                missed.append(m)
                background.append(b)
    result = dict(config=args.config, checkpoint=args.checkpoint, images=len(items),
                  **summarise(torch.cat(missed), torch.cat(background)))
    print(json.dumps(result, indent=1))
    out = args.out or osp.join(osp.dirname(osp.abspath(args.checkpoint)),
                               'background_weights.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {out}')
    return result


if __name__ == '__main__':
    main()
