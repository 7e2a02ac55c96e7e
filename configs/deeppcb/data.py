# The data of configs/deeppcb/, in one place: every run of the folder reads these fields
# (deeppcb_base.py builds the dataloaders, the evaluator and num_classes from them). For
# your own data, copy the folder and rewrite this file (README: "Your own data").
data_root = 'data/deeppcb/'
# the benchmark's split: 2% labeled (20 scans), 98% unlabeled (tools/misc/split_coco.py)
classes = ('open', 'short', 'mousebite', 'spur', 'copper', 'pin-hole')
image_prefix = 'images/'  # file_name in the COCO files is relative to data_root + this
labeled_ann_file = 'semi_anns/instances_train.1@2.json'
unlabeled_ann_file = 'semi_anns/instances_train.1@2-unlabeled.json'
val_ann_file = 'annotations/instances_val.json'
all_labeled_ann_file = 'annotations/instances_train.json'  # the oracle's (benchmark only)
image_size = (320, 320)  # whole scans are resized to this (keep_ratio)
crop_size = (192, 192)  # training crops of the resized scans
