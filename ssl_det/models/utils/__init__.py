from .ignore_assigner import IgnoreAwareMaxIoUAssigner
from .pseudo_instances import masks_to_bitmap, project_instances

__all__ = ['project_instances', 'masks_to_bitmap', 'IgnoreAwareMaxIoUAssigner']
