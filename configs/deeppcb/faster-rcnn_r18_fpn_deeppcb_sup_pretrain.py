# DeepPCB stage 1: supervised from scratch on the labeled scans of data.py (the benchmark's:
# 2% of the train scans, 20, fold 1 of tools/misc/split_coco.py). Every stage-2 run on these
# labels starts from its checkpoint (benchmarks/label_efficiency.py --dataset deeppcb passes
# it as load_from).
_base_ = ['./deeppcb_base.py', '../_base_/schedules/demo_pretrain.py']

max_iters = 1200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
