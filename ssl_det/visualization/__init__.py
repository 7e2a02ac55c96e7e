"""Pictures for point-cloud scenes: bird's-eye views, PLY scenes, perspective renders."""
from .bev import (BOX_EDGES, CLASS_COLORS, GT_COLOR, RenderResult, bev_figure, class_color,
                  draw_bev, figure_to_array, render_perspective_png, save_bev_png,
                  write_scene_ply)

__all__ = [
    'BOX_EDGES', 'CLASS_COLORS', 'GT_COLOR', 'RenderResult', 'bev_figure', 'class_color',
    'draw_bev', 'figure_to_array', 'render_perspective_png', 'save_bev_png', 'write_scene_ply'
]
