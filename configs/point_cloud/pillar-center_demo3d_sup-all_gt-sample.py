# Stage 1 of the 3D demo's GT-sampling protocol on every label (the oracle): ObjectSample
# from a database of every train frame (gt_database_train).
_base_ = ['./pillar-center_demo3d_sup-all.py']

db_sampler = dict(_base_.db_sampler, db_info_file='data/demo3d/gt_database_train/dbinfos.json')
train_pipeline = _base_.train_pipeline[:1] + [db_sampler] + _base_.train_pipeline[1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
