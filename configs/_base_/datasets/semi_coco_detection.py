# COCO labeled + unlabeled, mmdet's semi-supervised pipelines, ssl_det's MultiSourceSampler
# (exact labeled:unlabeled ratio per batch and per rank, finite epochs, no spinning on an
# empty aspect-ratio group). Splits: tools/misc/split_coco.py (data/README.md).
_base_ = ['mmdet::_base_/datasets/semi_coco_detection.py']

batch_size = 5
labeled_dataset = _base_.labeled_dataset
unlabeled_dataset = _base_.unlabeled_dataset
labeled_dataset.ann_file = 'semi_anns/instances_train2017.1@10.json'
unlabeled_dataset.ann_file = 'semi_anns/instances_train2017.1@10-unlabeled.json'
unlabeled_dataset.data_prefix = dict(img='train2017/')
# mmdet's base dicts carry _scope_='mmdet', which would build mmdet's CocoDataset and mmcv's
# LoadImageFromFile: in ssl_det's scope they are ssl_det's (start-up checks without reading
# the files twice, unreadable images of the unlabeled pool skipped and counted), and every
# mmdet transform is still found through the parent registry.
labeled_dataset['_scope_'] = unlabeled_dataset['_scope_'] = 'ssl_det'
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(_delete_=True, type='MultiSourceSampler', batch_size=batch_size,
                 source_ratio=[1, 4], group_by_aspect_ratio=True),
    dataset=dict(_scope_='ssl_det', datasets=[labeled_dataset, unlabeled_dataset]))
