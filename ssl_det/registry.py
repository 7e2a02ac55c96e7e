"""ssl_det's registries: a child of each of mmdet's, in scope ``ssl_det``.

mmdet already registers names such as ``SoftTeacher`` and ``MeanTeacherHook``. Our own
classes live in child registries so that ``type='ssl_det.X'`` (from an mmdet config with
``custom_imports=dict(imports=['ssl_det'])``) builds ours, ``type='X'`` still builds mmdet's,
and with ``default_scope='ssl_det'`` bare names build ours while every mmdet module is still
found through the parent.
"""
from mmdet import registry as mmdet_registry
from mmengine.registry import Registry


def _child(name: str, parent: Registry, *locations: str) -> Registry:
    return Registry(name, parent=parent, scope='ssl_det', locations=list(locations))


RUNNERS = _child('runner', mmdet_registry.RUNNERS, 'ssl_det.engine.runner')
RUNNER_CONSTRUCTORS = _child('runner constructor', mmdet_registry.RUNNER_CONSTRUCTORS,
                             'ssl_det.engine.runner')
LOOPS = _child('loop', mmdet_registry.LOOPS, 'ssl_det.engine.runner')
HOOKS = _child('hook', mmdet_registry.HOOKS, 'ssl_det.engine.hooks')
DATASETS = _child('dataset', mmdet_registry.DATASETS, 'ssl_det.datasets')
DATA_SAMPLERS = _child('data sampler', mmdet_registry.DATA_SAMPLERS, 'ssl_det.datasets')
TRANSFORMS = _child('transform', mmdet_registry.TRANSFORMS, 'ssl_det.datasets.transforms')
MODELS = _child('model', mmdet_registry.MODELS, 'ssl_det.models')
MODEL_WRAPPERS = _child('model_wrapper', mmdet_registry.MODEL_WRAPPERS, 'ssl_det.models')
WEIGHT_INITIALIZERS = _child('weight initializer', mmdet_registry.WEIGHT_INITIALIZERS,
                             'ssl_det.models')
OPTIMIZERS = _child('optimizer', mmdet_registry.OPTIMIZERS, 'ssl_det.engine')
OPTIM_WRAPPERS = _child('optim_wrapper', mmdet_registry.OPTIM_WRAPPERS, 'ssl_det.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer wrapper constructor',
                                    mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS, 'ssl_det.engine')
PARAM_SCHEDULERS = _child('parameter scheduler', mmdet_registry.PARAM_SCHEDULERS,
                          'ssl_det.engine')
METRICS = _child('metric', mmdet_registry.METRICS, 'ssl_det.evaluation')
EVALUATOR = _child('evaluator', mmdet_registry.EVALUATOR, 'ssl_det.evaluation')
TASK_UTILS = _child('task util', mmdet_registry.TASK_UTILS, 'ssl_det.models')
VISUALIZERS = _child('visualizer', mmdet_registry.VISUALIZERS, 'ssl_det.engine')
VISBACKENDS = _child('vis_backend', mmdet_registry.VISBACKENDS, 'ssl_det.engine')
LOG_PROCESSORS = _child('log_processor', mmdet_registry.LOG_PROCESSORS, 'ssl_det.engine')

ALL_REGISTRIES = {
    name: reg for name, reg in globals().items()
    if isinstance(reg, Registry)
}
