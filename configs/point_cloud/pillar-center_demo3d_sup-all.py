# Supervised PillarDetector on every labeled frame of the demo scenes (the oracle of the
# label-efficiency benchmark).
_base_ = ['../_base_/models/pillar-center_demo3d.py', '../_base_/datasets/demo3d_detection.py',
          '../_base_/schedules/demo3d.py', '../_base_/demo_runtime.py']
randomness = dict(seed=0)
