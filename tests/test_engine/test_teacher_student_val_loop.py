import pytest
import torch.nn as nn
from engine_fakes import (FakeTeacherStudent, ImageDataset, PlainModel, Recorder,
                          make_runner, mean_prediction)
from mmengine.model import BaseModel

from ssl_det.engine.runner import TeacherStudentValLoop

VAL_LOOP = 'TeacherStudentValLoop'


def test_evaluates_teacher_and_student_with_prefixes(tmp_path, model):
    model.predict_on = 'student'  # the configured choice, to be restored afterwards
    recorder = Recorder()
    runner = make_runner(tmp_path, model, val_cfg=dict(type=VAL_LOOP),
                         custom_hooks=[recorder])

    metrics = runner.val()

    assert isinstance(runner.val_loop, TeacherStudentValLoop)

    data = ImageDataset(4)
    expected = {'teacher/fake/value': mean_prediction(model.teacher, data),
                'student/fake/value': mean_prediction(model.student, data)}
    assert expected['teacher/fake/value'] != pytest.approx(expected['student/fake/value'])
    assert metrics == pytest.approx(expected)
    assert recorder.val_metrics == [metrics]  # one dict, both members, for CheckpointHook
    assert model.predict_on == 'student'


def test_evaluate_chooses_members(tmp_path, model):
    runner = make_runner(tmp_path, model,
                         val_cfg=dict(type=VAL_LOOP, evaluate=('student', )))
    metrics = runner.val()
    assert metrics == pytest.approx(
        {'student/fake/value': mean_prediction(model.student, ImageDataset(4))})
    assert model.predict_on == 'teacher'


def test_plain_model_is_evaluated_once_without_prefix(tmp_path):
    model = PlainModel()
    metrics = make_runner(tmp_path, model, val_cfg=dict(type=VAL_LOOP)).val()
    assert metrics == pytest.approx({'fake/value': mean_prediction(model.net, ImageDataset(4))})


def test_predict_on_restored_when_evaluation_fails(tmp_path, model):
    def broken(inputs):
        raise RuntimeError('student failed')

    model.student.forward = broken
    runner = make_runner(tmp_path, model, val_cfg=dict(type=VAL_LOOP))
    with pytest.raises(RuntimeError, match='student failed'):
        runner.val()  # the teacher pass succeeds, the student pass raises
    assert model.predict_on == 'teacher'


def test_teacher_student_model_without_predict_on_raises(tmp_path):
    class NoSwitch(BaseModel):
        def __init__(self):
            super().__init__()
            self.teacher, self.student = nn.Conv2d(3, 1, 1), nn.Conv2d(3, 1, 1)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return [dict(value=0.0)]

    runner = make_runner(tmp_path, NoSwitch(), val_cfg=dict(type=VAL_LOOP))
    with pytest.raises(AttributeError, match='no `predict_on`'):
        runner.val()


@pytest.mark.parametrize('evaluate', [(), ('teacher', 'ema'), ('student', 'student')])
def test_bad_evaluate_raises(tmp_path, model, evaluate):
    with pytest.raises(ValueError, match='evaluate must list distinct members'):
        make_runner(tmp_path, model, val_cfg=dict(type=VAL_LOOP, evaluate=evaluate)).val()


def test_single_member_as_string_from_an_mmdet_scope(tmp_path):
    model = FakeTeacherStudent()
    runner = make_runner(tmp_path, model, default_scope='mmdet',
                         val_cfg=dict(type='ssl_det.TeacherStudentValLoop', evaluate='teacher'))
    assert list(runner.val()) == ['teacher/fake/value']
