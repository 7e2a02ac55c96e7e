"""ssl_det's data transforms (2D strong/weak helpers)."""
from .photometric import AlbuPhotometric

__all__ = ['AlbuPhotometric']
