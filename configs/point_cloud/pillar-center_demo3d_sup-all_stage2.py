# Stage 2 of the 3D demo protocol on every label (the oracle): continue the all-label model
# (pillar-center_demo3d_sup-all.py) for the same iterations and schedule.
_base_ = ['../_base_/models/pillar-center_demo3d.py', '../_base_/datasets/demo3d_detection.py',
          '../_base_/schedules/demo3d_finetune.py', '../_base_/demo_runtime.py']

load_from = 'work_dirs/label_efficiency_3d/seed0/pillar-center_demo3d_sup-all/iter_1200.pth'
randomness = dict(seed=0)
