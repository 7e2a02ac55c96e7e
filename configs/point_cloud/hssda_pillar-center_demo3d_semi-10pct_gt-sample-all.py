# The HSSDA-style config in the 3D demo's GT-sampling protocol, with GT sampling on the
# student's whole input as in HSSDA's code: besides the labeled scenes' ObjectSample (as in
# hssda_pillar-center_demo3d_semi-10pct_gt-sample.py), the labeled split's objects are pasted
# into each pseudo-labeled strong scene after the teacher has labeled it (TeacherStudent3D's
# labeled_paste: never onto a box the teacher saw), as ground truth beside the pseudo boxes.
# The counts are what ObjectSample adds to a labeled scene on average (its targets 12 / 6 / 6
# less the 5.1 / 2.3 / 1.6 labeled objects a scene holds).
_base_ = ['./hssda_pillar-center_demo3d_semi-10pct_gt-sample.py']

model = dict(labeled_paste=dict(db_sampler=_base_.db_sampler, num_paste=[7, 4, 4],
                                point_cloud_range=_base_.point_cloud_range))
