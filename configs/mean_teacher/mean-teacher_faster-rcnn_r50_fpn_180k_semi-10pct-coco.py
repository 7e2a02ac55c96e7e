# Mean teacher with Faster R-CNN R50-FPN on COCO, 10% labels (fold 1), dual threshold.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/semi_coco_detection.py',
    '../_base_/semi_runtime_180k.py',
]

detector = _base_.model
# Proposals overlapping an ignored (ambiguous) pseudo box are neither foreground nor
# background for the student.
detector.train_cfg.rpn.assigner.ignore_iof_thr = 0.5
detector.train_cfg.rcnn.assigner.ignore_iof_thr = 0.5
model = dict(
    _delete_=True,
    type='TeacherStudent',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    pseudo_label=dict(type='DualThreshold', high=0.9, low=0.5),
    unsup_weight=2.0,
    predict_on='teacher')
