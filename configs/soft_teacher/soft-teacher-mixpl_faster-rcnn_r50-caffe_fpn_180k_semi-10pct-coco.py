# Soft Teacher with mixed pseudo labels (MixPL's idea, Chen et al. 2023) on COCO, 10% labels:
# once 8 strong views are cached, the student learns on a Mixup batch (each strong view
# blended 1:1 with a view cached from an earlier batch), which replaces the plain strong
# views' loss as in MixPL (so Soft Teacher's background weights and jitter-checked regression
# apply only until then), and on one Mosaic of 4 cached views
# (each resized by 0.5-1.0, MixPL's 400-800 px for 1333x800 images; loss weight 0.5), every
# pseudo box carried exactly into the mixed image. Labeled images with rare classes are
# drawn more often: repeat-factor sampling (LVIS) over the labeled split, each image repeated
# max(1, sqrt(t / f)) times for the rarest class it holds (f: the fraction of labeled images
# with that class); t = 0.01 repeats the 10% split's classes seen in under 1% of its images.
_base_ = ['./soft-teacher_faster-rcnn_r50-caffe_fpn_180k_semi-10pct-coco.py']

model = dict(mixing=dict(mixup=True, mosaic=True, cache_size=8, mosaic_scale=(0.5, 1.0),
                         mixup_weight=1.0, mosaic_weight=0.5, replace_strong=True))
labeled_dataset = dict(type='ClassBalancedDataset', oversample_thr=0.01,
                       dataset=_base_.labeled_dataset)
train_dataloader = dict(
    dataset=dict(datasets=[labeled_dataset, _base_.unlabeled_dataset]))
