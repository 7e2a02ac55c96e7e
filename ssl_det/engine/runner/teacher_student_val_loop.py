"""Validate the teacher and the student of a teacher-student model in one val epoch."""
from typing import Dict, List, Sequence, Union

from mmengine.evaluator import Evaluator
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmengine.runner.loops import _parse_losses
from torch.utils.data import DataLoader

from ssl_det.registry import LOOPS

_MEMBERS = ('teacher', 'student')


@LOOPS.register_module()
class TeacherStudentValLoop(ValLoop):
    """Evaluate the teacher and the student on the val set, one after the other.

    For each member named in ``evaluate`` the loop sets ``model.predict_on``, runs
    the whole val dataloader through the evaluator and prefixes the metrics with
    the member's name (``teacher/coco/bbox_mAP``, ``student/coco/bbox_mAP``). All
    metrics go to ``after_val_epoch`` in one dict, so
    ``CheckpointHook(save_best='teacher/coco/bbox_mAP')`` can select on either.
    ``model.predict_on`` is restored afterwards. A model without ``teacher`` and
    ``student`` (a plain detector) is evaluated once, without prefixes, as
    mmengine's ``ValLoop`` does.

    Args:
        runner (Runner): A reference of the runner.
        dataloader (DataLoader or dict): The val dataloader or its config.
        evaluator (Evaluator or dict or list): The evaluator or its config.
        fp16 (bool): Whether to validate under autocast. Defaults to False.
        evaluate (Sequence[str]): Which members to evaluate, in order; any of
            ``'teacher'`` and ``'student'``. Defaults to ('teacher', 'student').
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False,
                 evaluate: Sequence[str] = _MEMBERS) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        if isinstance(evaluate, str):
            evaluate = (evaluate, )
        unknown = [name for name in evaluate if name not in _MEMBERS]
        if not evaluate or unknown or len(set(evaluate)) != len(evaluate):
            raise ValueError(
                f'TeacherStudentValLoop: evaluate must list distinct members out of '
                f"{_MEMBERS}, got {tuple(evaluate)}. Fix val_cfg.evaluate, e.g. "
                "evaluate=('teacher',).")
        self.evaluate = tuple(evaluate)

    def run(self) -> dict:
        """Launch validation of each member; return all metrics, prefixed."""
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()

        model = self.runner.model
        if is_model_wrapper(model):
            model = model.module
        if hasattr(model, 'teacher') and hasattr(model, 'student'):
            if not hasattr(model, 'predict_on'):
                raise AttributeError(
                    f'TeacherStudentValLoop: {type(model).__name__} has a teacher and a '
                    'student but no `predict_on` attribute to choose between them. Use '
                    "ssl_det's TeacherStudent, or mmengine's ValLoop for this model.")
            metrics = dict()
            saved_predict_on = model.predict_on
            try:
                for member in self.evaluate:
                    model.predict_on = member
                    metrics.update({
                        f'{member}/{key}': value
                        for key, value in self._run_epoch().items()
                    })
            finally:
                # The choice belongs to the model's config (e.g. test-time predict_on);
                # validation must not leave it on whichever member ran last.
                model.predict_on = saved_predict_on
        else:
            metrics = self._run_epoch()

        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    def _run_epoch(self) -> dict:
        """Run the val dataloader once with the model as it is set; the metrics
        (and val losses, if the model returns any)."""
        self.val_loss.clear()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.val_loss:
            metrics.update(_parse_losses(self.val_loss, 'val'))
        return metrics
