# Stage 1 of the 3D demo's GT-sampling protocol (the peers' labeled pipeline): the 10%-label
# model of pillar-center_demo3d_sup-10pct.py with ObjectSample pasting objects of the labeled
# split's database (semi_anns/gt_database_1@10) into each labeled scene before augmentation.
_base_ = ['./pillar-center_demo3d_sup-10pct.py']

train_pipeline = _base_.train_pipeline[:1] + [_base_.db_sampler] + _base_.train_pipeline[1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
