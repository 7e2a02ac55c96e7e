# Stage 2 of the 3D demo protocol, supervised: continue the 10%-label model
# (pillar-center_demo3d_sup-10pct.py, stage 1) on the same labeled scenes, with exactly the
# semi-supervised runs' labeled augmentation, schedule and iterations. The baseline a
# semi-supervised stage 2 must beat.
_base_ = ['../_base_/models/pillar-center_demo3d.py', '../_base_/datasets/demo3d_detection.py',
          '../_base_/schedules/demo3d_finetune.py', '../_base_/demo_runtime.py']

train_dataloader = dict(dataset=dict(ann_file='semi_anns/train.1@10.json'))
load_from = 'work_dirs/label_efficiency_3d/seed0/pillar-center_demo3d_sup-10pct/iter_1200.pth'
randomness = dict(seed=0)
