# Stage 2 of the 3D demo's GT-sampling protocol, supervised:
# pillar-center_demo3d_sup-10pct_stage2.py with the labeled split's GT sampling (the
# baseline hssda_..._gt-sample.py must beat).
_base_ = ['./pillar-center_demo3d_sup-10pct_stage2.py']

train_pipeline = _base_.train_pipeline[:1] + [_base_.db_sampler] + _base_.train_pipeline[1:]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
load_from = ('work_dirs/label_efficiency_3d/seed0/'
             'pillar-center_demo3d_sup-10pct_gt-sample/iter_1200.pth')
