# Mean teacher with RetinaNet R50-FPN on COCO, 10% labels (fold 1), dual threshold.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/semi_coco_detection.py',
    '../_base_/semi_runtime_180k.py',
]

detector = _base_.model
detector.train_cfg.assigner.ignore_iof_thr = 0.5
model = dict(
    _delete_=True,
    type='TeacherStudent',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    # Focal-loss scores are lower than softmax scores: thresholds to match.
    pseudo_label=dict(type='DualThreshold', high=0.6, low=0.3),
    unsup_weight=2.0)
