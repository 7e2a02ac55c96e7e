from .pseudo_instances import project_instances, split_predictions

__all__ = ['split_predictions', 'project_instances']
