# Mean teacher with FCOS R50-FPN (GN head) on COCO, 10% labels (fold 1). FCOS's assigner
# has no ignore region, so the policy is a fixed threshold (no ambiguous band).
_base_ = [
    '../_base_/models/fcos_r50-caffe_fpn_gn-head.py',
    '../_base_/datasets/semi_coco_detection.py',
    '../_base_/semi_runtime_180k.py',
]

detector = _base_.model
model = dict(
    _delete_=True,
    type='TeacherStudent',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
    unsup_weight=2.0)
