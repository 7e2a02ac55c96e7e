# As hssda_pillar-center_kitti-3class_semi-2pct.py, with 20% of the training frames labeled
# (its own split files and object database).
_base_ = ['./hssda_pillar-center_kitti-3class_semi-2pct.py']

percent = 20
labeled_pipeline = [
    dict(t, db_info_file=f'data/kitti/gt_database_1@{percent}/dbinfos.json')
    if t['type'] == 'ObjectSample' else t
    for t in _base_.train_dataloader.dataset.datasets[0].pipeline
]
model = dict(labeled_paste=dict(db_sampler=next(
    t for t in labeled_pipeline if t['type'] == 'ObjectSample')))
train_dataloader = dict(dataset=dict(datasets=[
    dict(_base_.train_dataloader.dataset.datasets[0],
         ann_file=f'semi_anns/kitti_infos_train.1@{percent}.json', pipeline=labeled_pipeline),
    dict(_base_.train_dataloader.dataset.datasets[1],
         ann_file=f'semi_anns/kitti_infos_train.1@{percent}-unlabeled.json'),
]))
