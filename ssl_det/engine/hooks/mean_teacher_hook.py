"""Keep the teacher an exponential moving average (EMA) of the student, after a burn-in."""
import logging
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ssl_det.registry import HOOKS


@HOOKS.register_module()
class MeanTeacherHook(Hook):
    """Update the teacher as an EMA of the student, after a supervised burn-in.

    For the first ``burn_in_iters`` iterations the model trains on labeled data
    only (``model.unsup_active = False``) and the teacher is left alone. At the
    start of iteration ``burn_in_iters`` the student is copied into the teacher
    (all parameters and buffers) and unsupervised training begins; until then the
    teacher keeps the weights it was built or loaded with (and is evaluated as
    such by a val loop during the burn-in). From then on,
    after every ``interval``-th optimizer step the teacher becomes::

        teacher = keep * teacher + (1 - keep) * student
        keep(t) = min(momentum_decay, 1 - (1 + warmup) / (t + 1 + warmup))

    where ``t`` is the number of optimizer steps the student has taken since the
    copy (so ``keep(0) = 0`` is the copy itself). With ``warmup=0`` the teacher is
    the plain running mean of the students until ``1 / (1 - momentum_decay)``
    steps, then an EMA with keep-rate ``momentum_decay`` — the schedule of the
    original SoftTeacher. With ``ramp_iters > 0`` the keep-rate instead rises in a
    straight line from ``ramp_start`` to ``momentum_decay`` over the first
    ``ramp_iters`` steps (HSSDA: 0.5 → 0.9996 over 2,000 steps)::

        keep(t) = ramp_start + (momentum_decay - ramp_start) * min(t / ramp_iters, 1)

    A teacher that starts as a *trained* model needs no ramp: the running mean would make it
    follow the student within a few steps (after 100 steps the copy weighs 1%), and a
    student that degrades under its first pseudo labels then drags the teacher, and the
    pseudo labels, with it. So with ``ramp='auto'`` (the default) the keep-rate is
    ``momentum_decay`` from the first update (mmdet's ``MeanTeacherHook``) when the run
    starts from the weights of ``load_from`` (a supervised checkpoint; not a resume). The
    ramp above runs when the teacher starts from scratch or from a burn-in (whose student
    may be barely trained), or when ``warmup`` / ``ramp_iters`` is given.
    ``ramp='always'`` / ``'never'`` force it.

    A teacher also cannot lag the whole run: its time constant ``1 / (1 - keep)`` is at
    most ``max_lag`` (a tenth) of the unlabeled iterations (``max_iters - burn_in_iters``),
    so a ``momentum_decay`` too slow for the schedule is lowered to
    ``1 - 1 / (max_lag * iterations)`` (never below 0.9), with a warning. mmdet's 0.999 suits its 180k
    iterations (a time constant of 1,000); at the end of a 1,000-iteration stage 2 the
    checkpoint it started from would still weigh 0.999 ** 1000 = 37% of the teacher.

    The hook holds no state of its own besides that choice (saved in the checkpoint):
    everything follows from ``runner.iter``,
    and the teacher is part of the model's state dict, so a resumed run continues
    exactly (the copy is not repeated after resuming past the burn-in). Under DDP
    every rank applies the same update to identical student parameters, so the
    teachers' parameters stay identical. The students' BN statistics are not: with
    ``broadcast_buffers=False`` (ssl_det's CPU launch, mmengine's DDP wrapper) each
    rank's student keeps statistics of its own batches. With ``sync_buffers`` (the
    default) the teachers' floating-point buffers are averaged over the ranks after
    every update (one all-reduce of the BN statistics), so every rank's teacher is the
    same network, labels its images alike, and is the one rank 0 saves. An iteration
    whose optimizer step ``SkipNonFiniteOptimWrapper`` skipped (non-finite loss or
    gradient) gets no EMA update either.

    The current keep-rate and ``unsup_active`` are logged as
    ``train/ema_momentum`` and ``train/unsup_active``.

    Args:
        momentum_decay (float): The largest keep-rate of the teacher (the
            fraction of the old teacher kept per update). Defaults to 0.999.
        warmup (int): Slows the ramp of the keep-rate towards
            ``momentum_decay``; 0 gives ``keep(t) = 1 - 1 / (t + 1)``.
            Defaults to 0.
        ramp_iters (int): Length of the linear ramp of the keep-rate; 0 (the
            default) uses the ``warmup`` schedule instead.
        ramp_start (float): Keep-rate at the start of the linear ramp.
            Defaults to 0.5.
        interval (int): Update the teacher every ``interval`` optimizer steps
            (counted from the end of the burn-in). Defaults to 1.
        buffers (str): How the teacher's floating-point buffers (BN running
            mean/var) follow the student: ``'average'`` blends them with the
            same keep-rate as the parameters, ``'copy'`` copies them. Integer
            buffers (``num_batches_tracked``) are always copied.
            Defaults to 'average'.
        burn_in_iters (int): Number of supervised-only iterations before the
            teacher is initialised from the student and unsupervised training
            starts. Defaults to 0.
        sync_buffers (bool): In a distributed run, average the teacher's
            floating-point buffers over the ranks after each update and after the
            burn-in copy. Defaults to True.
        ramp (str): ``'auto'``, ``'always'`` or ``'never'``: whether the keep-rate ramps
            up from the copy (see above). Defaults to 'auto'.
        max_lag (float, optional): the longest time constant of the teacher, as a fraction
            of the unlabeled iterations; None keeps ``momentum_decay`` whatever the run's
            length. Defaults to 0.1.
    """

    priority = 'NORMAL'

    def __init__(self,
                 momentum_decay: float = 0.999,
                 warmup: int = 0,
                 interval: int = 1,
                 ramp_iters: int = 0,
                 ramp_start: float = 0.5,
                 buffers: str = 'average',
                 burn_in_iters: int = 0,
                 sync_buffers: bool = True,
                 ramp: str = 'auto',
                 max_lag: Optional[float] = 0.1) -> None:
        if not 0.0 <= momentum_decay < 1.0:
            raise ValueError(f'MeanTeacherHook: momentum_decay must be in [0, 1), got '
                             f'{momentum_decay}. It is the keep-rate of the teacher, '
                             'e.g. 0.999.')
        if warmup < 0:
            raise ValueError(f'MeanTeacherHook: warmup must be >= 0, got {warmup}.')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'MeanTeacherHook: interval must be an int >= 1, got {interval}.')
        if buffers not in ('average', 'copy'):
            raise ValueError(f"MeanTeacherHook: buffers must be 'average' or 'copy', got "
                             f'{buffers!r}.')
        if not isinstance(burn_in_iters, int) or burn_in_iters < 0:
            raise ValueError(f'MeanTeacherHook: burn_in_iters must be an int >= 0, got '
                             f'{burn_in_iters}.')
        if not isinstance(ramp_iters, int) or ramp_iters < 0:
            raise ValueError(f'MeanTeacherHook: ramp_iters must be an int >= 0, got '
                             f'{ramp_iters!r}.')
        if not 0.0 <= ramp_start <= momentum_decay:
            raise ValueError(f'MeanTeacherHook: ramp_start must lie in [0, momentum_decay='
                             f'{momentum_decay}], got {ramp_start}.')
        if ramp_iters and warmup:
            raise ValueError('MeanTeacherHook: give warmup (the mean-teacher ramp) or '
                             'ramp_iters (the linear ramp), not both.')
        if ramp not in ('auto', 'always', 'never'):
            raise ValueError(f"MeanTeacherHook: ramp must be 'auto', 'always' or 'never', "
                             f'got {ramp!r}.')
        if ramp == 'never' and (warmup or ramp_iters):
            raise ValueError("MeanTeacherHook: ramp='never' with warmup or ramp_iters: a "
                             'ramp is asked for and refused; drop one.')
        if max_lag is not None and not 0 < max_lag <= 1:
            raise ValueError(f'MeanTeacherHook: max_lag must lie in (0, 1] or be None, got '
                             f'{max_lag!r}.')
        self.max_lag = max_lag
        self.ramp = ramp
        # whether this run's keep-rate ramps (resolved in before_train, kept on resume)
        self.ramps: Optional[bool] = {'always': True, 'never': False}.get(ramp)
        self.momentum_decay = momentum_decay
        self.warmup = warmup
        self.ramp_iters = ramp_iters
        self.ramp_start = ramp_start
        self.interval = interval
        self.buffers = buffers
        self.burn_in_iters = burn_in_iters
        self.sync_buffers = sync_buffers
        # (teacher tensors, student tensors) pairs, collected once in before_train.
        self._params: Optional[Tuple[List[torch.Tensor], List[torch.Tensor]]] = None
        self._float_buffers: Optional[Tuple[List[torch.Tensor], List[torch.Tensor]]] = None
        self._other_buffers: Optional[Tuple[List[torch.Tensor], List[torch.Tensor]]] = None

    # ------------------------------------------------------------------ schedule
    def keep_rate(self, step: int) -> float:
        """The teacher's keep-rate after the student's ``step``-th optimizer step
        since the end of the burn-in (``step = 0`` is the copy)."""
        if self.ramps is False:
            return self.momentum_decay if step > 0 else 0.0
        if self.ramp_iters:
            if step <= 0:
                return 0.0
            frac = min(step / self.ramp_iters, 1.0)
            return self.ramp_start + (self.momentum_decay - self.ramp_start) * frac
        return min(self.momentum_decay,
                   1.0 - (1.0 + self.warmup) / (step + 1.0 + self.warmup))

    def unsup_active(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (0-based) trains on pseudo labels."""
        return iteration >= self.burn_in_iters

    # --------------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        """Check the model, collect the tensors to update, set ``unsup_active``
        from ``runner.iter`` (which a resume has already restored)."""
        model = self._unwrap(runner)
        self._collect(model)
        self._set_unsup_active(runner, model)
        self._cap_decay(runner)
        if self.ramps is None:  # 'auto', not restored by a resume
            loaded = (getattr(runner, '_load_from', None) is not None
                      and not getattr(runner, '_resume', False))
            self.ramps = bool(self.warmup or self.ramp_iters) or not loaded
            print_log(
                'MeanTeacherHook: ' + (
                    'the teacher starts as the weights of load_from, so its keep-rate is '
                    f'{self.momentum_decay} from the first update' if not self.ramps else
                    f'the keep-rate ramps up to {self.momentum_decay} from the copy'),
                logger='current')

    def _cap_decay(self, runner) -> None:
        """Lower ``momentum_decay`` to the run's longest teacher time constant (once; a
        resumed run computes the same cap from the same ``max_iters``)."""
        iterations = (getattr(runner, 'max_iters', None) or 0) - self.burn_in_iters
        if self.max_lag is None or iterations <= 0 or getattr(self, '_capped', False):
            return
        self._capped = True
        # never below 0.9 (a time constant of 10): a run of a few iterations keeps an EMA
        cap = 1.0 - 1.0 / max(self.max_lag * iterations, 10.0)
        if self.momentum_decay > cap:
            print_log(
                f'MeanTeacherHook: momentum_decay {self.momentum_decay} gives the teacher a '
                f'time constant of {1 / (1 - self.momentum_decay):.0f} iterations, more than '
                f'max_lag={self.max_lag} of the {iterations} unlabeled iterations: it would '
                f'end close to the model it started from. Using {cap:.4g} (time constant '
                f'{1 / (1 - cap):.0f}); max_lag=None keeps {self.momentum_decay}.',
                logger='current', level=logging.WARNING)
            self.momentum_decay = cap
            self.ramp_start = min(self.ramp_start, cap)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('ssl_det_counters', {})['ema_ramps'] = bool(self.ramps)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = (checkpoint.get('ssl_det_counters') or {}).get('ema_ramps')
        if getattr(runner, '_resume', False) and saved is not None and self.ramp == 'auto':
            self.ramps = bool(saved)  # the resumed run keeps the schedule it started with

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """At the end of the burn-in copy the student into the teacher; set
        ``unsup_active`` for this iteration."""
        model = self._unwrap(runner)
        # Tied to the iteration number, so it happens once per run: a resume past
        # burn_in_iters never sees this iteration again.
        if runner.iter == self.burn_in_iters:
            self._copy_student_to_teacher(model)
            runner.message_hub.update_scalar('train/ema_momentum', self.keep_rate(0))
            print_log(f'MeanTeacherHook: burn-in over at iteration {runner.iter}; teacher '
                      'initialised from the student, unsupervised loss on.',
                      logger='current')
        self._set_unsup_active(runner, model)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """After every ``interval``-th optimizer step since the burn-in, move the
        teacher towards the student."""
        # runner.iter is still the index of the iteration just run, so the student
        # has taken `step` optimizer steps since the copy at burn_in_iters.
        step = runner.iter + 1 - self.burn_in_iters
        if step <= 0 or step % self.interval != 0:
            return
        if getattr(getattr(runner, 'optim_wrapper', None), 'last_step_skipped', False):
            return  # SkipNonFiniteOptimWrapper left the student as it was: so is the teacher
        keep = self.keep_rate(step)
        self.ema_update(self._unwrap(runner), keep)
        runner.message_hub.update_scalar('train/ema_momentum', keep)

    # ------------------------------------------------------------------- updates
    @torch.no_grad()
    def ema_update(self, model: nn.Module, keep: float) -> None:
        """``teacher = keep * teacher + (1 - keep) * student`` for every parameter
        (and float buffer with ``buffers='average'``), with fused multi-tensor ops.

        Args:
            model (nn.Module): The unwrapped model with ``teacher`` and ``student``.
            keep (float): The keep-rate of the teacher.
        """
        params, float_buffers, other_buffers = self._collect(model)
        blended = [params]
        copied = [other_buffers]
        (blended if self.buffers == 'average' else copied).append(float_buffers)
        for teacher, student in blended:
            if teacher:
                torch._foreach_mul_(teacher, keep)
                torch._foreach_add_(teacher, student, alpha=1.0 - keep)
        for teacher, student in copied:
            if teacher:
                torch._foreach_copy_(teacher, student)
        self._sync_teacher_buffers()

    @torch.no_grad()
    def _copy_student_to_teacher(self, model: nn.Module) -> None:
        for teacher, student in self._collect(model):
            if teacher:
                torch._foreach_copy_(teacher, student)
        self._sync_teacher_buffers()

    @torch.no_grad()
    def _sync_teacher_buffers(self) -> None:
        """Average the teacher's float buffers over the ranks (one flat all-reduce)."""
        buffers = self._float_buffers[0] if self._float_buffers else []
        if not (self.sync_buffers and buffers and get_world_size() > 1):
            return
        flat = _flatten_dense_tensors(buffers)
        all_reduce(flat, op='mean')
        torch._foreach_copy_(buffers, _unflatten_dense_tensors(flat, buffers))

    # ------------------------------------------------------------------- helpers
    @staticmethod
    def _unwrap(runner) -> nn.Module:
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _set_unsup_active(self, runner, model: nn.Module) -> None:
        active = self.unsup_active(runner.iter)
        if hasattr(model, 'unsup_active'):
            model.unsup_active = active
        runner.message_hub.update_scalar('train/unsup_active', float(active))

    def _collect(self, model: nn.Module):
        """Pair the teacher's and the student's tensors by name (once)."""
        if self._params is not None:
            return self._params, self._float_buffers, self._other_buffers
        for name in ('teacher', 'student'):
            if not isinstance(getattr(model, name, None), nn.Module):
                raise AttributeError(
                    f'MeanTeacherHook: the model ({type(model).__name__}) has no `{name}` '
                    'module. Use it with a teacher-student model such as '
                    "ssl_det's TeacherStudent.")
        if self.burn_in_iters > 0 and not hasattr(model, 'unsup_active'):
            raise AttributeError(
                f'MeanTeacherHook: burn_in_iters={self.burn_in_iters} needs a model with '
                f'an `unsup_active` attribute, which {type(model).__name__} lacks. Set '
                'burn_in_iters=0 or use a model that supports a burn-in.')
        teacher, student = model.teacher, model.student
        t_params = dict(teacher.named_parameters())
        s_params = dict(student.named_parameters())
        t_buffers = dict(teacher.named_buffers())
        s_buffers = dict(student.named_buffers())
        _check_same_tensors('parameters', t_params, s_params)
        _check_same_tensors('buffers', t_buffers, s_buffers)

        trainable = [name for name, p in t_params.items() if p.requires_grad]
        if trainable:
            print_log(f'MeanTeacherHook: {len(trainable)} teacher parameters require grad '
                      f'(e.g. {trainable[0]}); the optimizer may change the teacher besides '
                      'the EMA. Freeze the teacher.', logger='current', level=logging.WARNING)

        # Keep the Parameter objects themselves (not .data): a later `param.data = ...`
        # (e.g. a device move) stays visible; the updates run under no_grad.
        def pairs(names, t, s):
            return [t[n] for n in names], [s[n] for n in names]

        self._params = pairs(list(t_params), t_params, s_params)
        float_names = [n for n, b in t_buffers.items() if b.is_floating_point()]
        other_names = [n for n, b in t_buffers.items() if not b.is_floating_point()]
        self._float_buffers = pairs(float_names, t_buffers, s_buffers)
        self._other_buffers = pairs(other_names, t_buffers, s_buffers)
        return self._params, self._float_buffers, self._other_buffers


def _check_same_tensors(kind: str, teacher: Dict[str, torch.Tensor],
                        student: Dict[str, torch.Tensor]) -> None:
    """Raise a clear error unless teacher and student have the same names, shapes
    and dtypes for ``kind`` (parameters or buffers)."""
    problems = []
    missing = sorted(set(student) - set(teacher))
    extra = sorted(set(teacher) - set(student))
    if missing:
        problems.append(f'in the student but not the teacher: {missing[:5]}')
    if extra:
        problems.append(f'in the teacher but not the student: {extra[:5]}')
    for name in teacher.keys() & student.keys():
        t, s = teacher[name], student[name]
        if t.shape != s.shape or t.dtype != s.dtype or t.device != s.device:
            problems.append(f'{name}: teacher {tuple(t.shape)} {t.dtype} {t.device} vs '
                            f'student {tuple(s.shape)} {s.dtype} {s.device}')
    if problems:
        raise ValueError(
            f'MeanTeacherHook: teacher and student {kind} differ, so the teacher cannot '
            f'be an EMA of the student ({len(problems)} problems): ' + '; '.join(problems[:5])
            + '. Build both from the same detector config.')
