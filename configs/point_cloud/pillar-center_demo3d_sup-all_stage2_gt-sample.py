# Stage 2 of the 3D demo's GT-sampling protocol on every label (the oracle), with the
# database of every train frame.
_base_ = ['./pillar-center_demo3d_sup-all_stage2.py']

db_sampler = dict(_base_.db_sampler, db_info_file='data/demo3d/gt_database_train/dbinfos.json')
train_pipeline = _base_.train_pipeline[:1] + [db_sampler] + _base_.train_pipeline[1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
load_from = ('work_dirs/label_efficiency_3d/seed0/'
             'pillar-center_demo3d_sup-all_gt-sample/iter_1200.pth')
