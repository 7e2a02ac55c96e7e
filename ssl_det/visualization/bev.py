"""Pictures of a point-cloud scene with its boxes: a bird's-eye-view PNG, a ``.ply`` any 3D
viewer opens, and (where a renderer works) a perspective PNG.

Conventions: points are (N, C) with x, y, z in metres first (LiDAR frame: x forward, y left,
z up); boxes are ssl_det's ``(x, y, z, dx, dy, dz, yaw)`` (:mod:`ssl_det.structures.box3d`).
Every function takes the same scene keywords:

- ``gt_boxes`` (M, 7) drawn green, solid; ``gt_labels`` (M,) are accepted for symmetry.
- ``pred_boxes`` (K, 7) in a per-class colour (``pred_labels`` index ``classes``) with the
  score written next to the box in the BEV (``pred_scores``).
- ``styles``: one entry per prediction, ``'solid'`` (default), ``'dashed'`` or ``'grey'``
  (grey, dotted), or a dict with ``color`` and/or ``linestyle`` (matplotlib values), so a
  pseudo-label picture can show "high solid, middle dashed, removed grey".

Each box shows its heading: the BEV draws a tick from the centre to the front face (the
``+dx/2`` face), the ``.ply`` and the perspective picture cross the front face with its two
diagonals, so a yaw off by 90° or 180° is visible at a glance.

**BEV layout.** x runs to the right and y up (a right-handed top view: a positive yaw turns
counter-clockwise on the picture); the axes are in metres, with equal aspect. The plot area
is ``image_size`` pixels along the longer side of ``point_cloud_range``; fixed margins add
room for ticks, a title and a height colour bar, so the layout depends only on the range and
``image_size`` (:func:`bev_figure` returns the figure, whose ``transData`` maps metres to
pixels). Points are dots coloured by height; more than ``max_points`` are subsampled with a
fixed stride and the picture says so.

**PLY.** :func:`write_scene_ply` writes one ASCII PLY with a ``vertex`` element (the points,
then 8 corners per box; ``x y z red green blue``) and an ``edge`` element (``vertex1 vertex2
red green blue``: 12 edges and 2 front-face diagonals per box), the form MeshLab and
CloudCompare read as line segments. ``open3d.io.read_point_cloud`` reads the vertices (points
*and* box corners); ``open3d.io.read_line_set`` reads the edges.

**Perspective.** :func:`render_perspective_png` uses open3d's
``OffscreenRenderer`` from a camera behind and above the sensor, in a child process by
default, because a missing GL/Vulkan driver can abort the whole process rather than raise.
On a machine without one it returns a false :class:`RenderResult` with the reason. With
open3d-cpu 0.20 on a Debian host without ``libvulkan1`` the reason is
``RuntimeError: Failed to load vulkan library!`` (after the warning "GLFWWindowSystem: X11
GLFW init failed ... Falling back to headless mode"), with or without
``OPEN3D_CPU_RENDERING=true`` or ``EGL_PLATFORM=surfaceless``.
"""
import inspect
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
from typing import List, NamedTuple, Optional, Sequence, Tuple

import matplotlib
import matplotlib.colors
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ssl_det.structures.box3d import box3d_corners

GT_COLOR = (0.2, 0.9, 0.2)
GREY = (0.55, 0.55, 0.55)
CLASS_COLORS = ((1.0, 0.3, 0.3), (1.0, 0.35, 1.0), (0.2, 0.85, 1.0), (1.0, 0.6, 0.1),
                (0.95, 0.95, 0.95), (0.6, 0.45, 1.0), (1.0, 0.85, 0.3))
BACKGROUND = (0.07, 0.07, 0.07)
# cividis without its darkest third (invisible on the dark background): blue-grey to yellow,
# no green or red to mistake for a box.
POINT_CMAP = matplotlib.colors.ListedColormap(
    matplotlib.colormaps['cividis'](np.linspace(0.35, 1.0, 256)), name='ssl_det_height')
NAMED_STYLES = {'solid': dict(linestyle='-'), 'dashed': dict(linestyle='--'),
                'grey': dict(linestyle=':', color=GREY)}
# Bottom face 0-3 counter-clockwise from (+dx/2, +dy/2), top face 4-7 (see box3d_corners);
# the front (+dx) face is 0, 3, 7, 4 and its diagonals mark the heading.
BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
             (0, 4), (1, 5), (2, 6), (3, 7), (0, 7), (3, 4))
DPI = 100
MARGINS_PX = dict(left=60, right=90, bottom=45, top=35)  # ticks, colour bar, title


class RenderResult(NamedTuple):
    """``(ok, reason)``; false when rendering failed, so ``if not result:`` works."""
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class _BoxSet(NamedTuple):
    corners: np.ndarray          # (M, 8, 3)
    colors: List[Tuple]          # one RGB per box
    linestyles: List[str]
    texts: List[Optional[str]]
    legend: List[Tuple[str, Tuple, str]]  # (label, colour, linestyle)


def _np(x, dim: Optional[int] = None, name: str = 'array') -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if dim is not None:
        arr = arr.reshape(-1, arr.shape[-1] if arr.size else dim)
        if arr.shape[1] < dim:
            raise ValueError(f'{name} must have at least {dim} columns, got {arr.shape}')
    return arr


def class_color(label: int) -> Tuple[float, float, float]:
    """The prediction colour of class index ``label`` (cycled through :data:`CLASS_COLORS`)."""
    return CLASS_COLORS[int(label) % len(CLASS_COLORS)]


def _class_name(label: int, classes: Optional[Sequence[str]]) -> str:
    if classes is not None and 0 <= label < len(classes):
        return str(classes[label])
    return f'class {label}'


def _box_sets(gt_boxes=None, gt_labels=None, pred_boxes=None, pred_labels=None,
              pred_scores=None, classes=None, styles=None) -> _BoxSet:
    """Corners, colours, line styles, texts and legend entries of all boxes, GT first."""
    corners, colors, linestyles, texts, legend = [], [], [], [], []
    if gt_boxes is not None and len(gt_boxes):
        gt = _np(gt_boxes, 7, 'gt_boxes')
        corners.append(box3d_corners(gt[:, :7]))
        colors += [GT_COLOR] * len(gt)
        linestyles += ['-'] * len(gt)
        texts += [None] * len(gt)
        legend.append(('ground truth', GT_COLOR, '-'))
    if pred_boxes is not None and len(pred_boxes):
        pred = _np(pred_boxes, 7, 'pred_boxes')
        labels = (np.zeros(len(pred), np.int64) if pred_labels is None
                  else _np(pred_labels).reshape(-1).astype(np.int64))
        scores = None if pred_scores is None else _np(pred_scores).reshape(-1)
        for name, arr in (('pred_labels', labels), ('pred_scores', scores), ('styles', styles)):
            if arr is not None and len(arr) != len(pred):
                raise ValueError(f'{name} has {len(arr)} entries for {len(pred)} pred_boxes')
        corners.append(box3d_corners(pred[:, :7]))
        seen = set()
        for i, label in enumerate(labels):
            style = dict(linestyle='-', color=class_color(label))
            entry = 'solid' if styles is None else styles[i]
            if isinstance(entry, str) and entry in NAMED_STYLES:
                entry = NAMED_STYLES[entry]
            elif not isinstance(entry, dict) or set(entry) - {'color', 'linestyle'}:
                raise ValueError(f'styles[{i}] = {entry!r}: use one of {sorted(NAMED_STYLES)} '
                                 "or a dict with 'color' and/or 'linestyle'")
            style.update(entry)
            colors.append(matplotlib.colors.to_rgb(style['color']))
            linestyles.append(style['linestyle'])
            texts.append(None if scores is None else f'{scores[i]:.2f}')
            if label not in seen and colors[-1] == class_color(label):  # grey ones: no entry
                seen.add(label)
                legend.append((_class_name(label, classes), class_color(label), '-'))
    corners = np.concatenate(corners) if corners else np.zeros((0, 8, 3))
    return _BoxSet(corners, colors, linestyles, texts, legend)


def _bev_extent(points: np.ndarray, corners: np.ndarray,
                point_cloud_range: Optional[Sequence[float]]) -> Tuple[float, ...]:
    """(x0, y0, x1, y1): from the range when given, else the scene's extent plus 1 m."""
    if point_cloud_range is not None:
        rng = [float(v) for v in point_cloud_range]
        if len(rng) not in (4, 6):
            raise ValueError('point_cloud_range must be [x0, y0, z0, x1, y1, z1] or [x0, y0, '
                             f'x1, y1], got {point_cloud_range}')
        return (rng[0], rng[1], rng[3], rng[4]) if len(rng) == 6 else tuple(rng)
    xy = np.concatenate([points[:, :2], corners.reshape(-1, 3)[:, :2]])
    if not len(xy):
        return -10.0, -10.0, 10.0, 10.0
    lo, hi = xy.min(axis=0) - 1, xy.max(axis=0) + 1
    return lo[0], lo[1], hi[0], hi[1]


def bev_figure(points, gt_boxes=None, gt_labels=None, pred_boxes=None, pred_labels=None,
               pred_scores=None, classes=None, point_cloud_range=None, styles=None,
               title=None, image_size: int = 800, max_points: int = 200_000
               ) -> Tuple[Figure, 'matplotlib.axes.Axes']:
    """Draw the bird's-eye view on a new Agg figure and return ``(figure, axes)``.

    ``axes.transData`` maps metres to display pixels (origin at the image's bottom left).
    See the module doc for the scene keywords and the layout.
    """
    pts = _np(points, 3, 'points') if points is not None else np.zeros((0, 3))
    boxes = _box_sets(gt_boxes, gt_labels, pred_boxes, pred_labels, pred_scores, classes,
                      styles)
    x0, y0, x1, y1 = _bev_extent(pts, boxes.corners, point_cloud_range)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f'empty BEV range x [{x0}, {x1}], y [{y0}, {y1}]')
    scale = image_size / max(x1 - x0, y1 - y0)  # pixels per metre
    plot_w, plot_h = round((x1 - x0) * scale), round((y1 - y0) * scale)
    m = MARGINS_PX
    width, height = plot_w + m['left'] + m['right'], plot_h + m['bottom'] + m['top']
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor='white')
    FigureCanvasAgg(fig)
    ax = fig.add_axes([m['left'] / width, m['bottom'] / height, plot_w / width,
                       plot_h / height], facecolor=BACKGROUND)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect('equal', adjustable='box')
    ax.set_xlabel('x (m)')
    ax.set_ylabel('y (m)')
    ax.tick_params(labelsize=8)

    inside = ((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1))
    shown = pts[inside]
    stride = max(1, int(np.ceil(len(shown) / max_points)))
    shown = shown[::stride]
    note = f'{len(pts)} points' + (f', {int(inside.sum())} in range' if not inside.all() else '')
    if stride > 1:
        note += f', 1 in {stride} drawn'
    z0, z1 = np.percentile(shown[:, 2], [1, 99]) if len(shown) else (-2.0, 1.0)
    dot = 2.0 if len(shown) > 50_000 else 6.0  # dots, in points^2: bigger when sparse
    scatter = ax.scatter(shown[:, 0], shown[:, 1], c=shown[:, 2], s=dot, marker='.',
                         linewidths=0, cmap=POINT_CMAP, vmin=z0, vmax=max(z1, z0 + 0.1))
    cax = fig.add_axes([(width - m['right'] + 15) / width, m['bottom'] / height,
                        12 / width, plot_h / height])
    fig.colorbar(scatter, cax=cax).set_label('z (m)', fontsize=8)
    cax.tick_params(labelsize=7)

    for corner, color, linestyle, text in zip(boxes.corners, boxes.colors, boxes.linestyles,
                                              boxes.texts):
        ring = corner[[0, 1, 2, 3, 0], :2]
        ax.plot(ring[:, 0], ring[:, 1], color=color, linestyle=linestyle, linewidth=1.5)
        centre, front = corner[:4, :2].mean(axis=0), (corner[0, :2] + corner[3, :2]) / 2
        ax.plot([centre[0], front[0]], [centre[1], front[1]], color=color,
                linestyle=linestyle, linewidth=1.5)
        if text is not None:
            ax.text(corner[:4, 0].max(), corner[:4, 1].max(), text, color=color, fontsize=7,
                    clip_on=True)
    if boxes.legend:
        ax.legend(handles=[Line2D([], [], color=c, linestyle=ls, label=label)
                           for label, c, ls in boxes.legend],
                  loc='upper right', fontsize=7, framealpha=0.6)
    ax.text(0.01, 0.01, note, transform=ax.transAxes, color='white', fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig, ax


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render an Agg figure to an (H, W, 3) uint8 RGB array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def draw_bev(points, **scene) -> np.ndarray:
    """The bird's-eye view as an (H, W, 3) uint8 RGB array; keywords as :func:`bev_figure`."""
    return figure_to_array(bev_figure(points, **scene)[0])


def save_bev_png(path: str, points, **scene) -> str:
    """Write the bird's-eye view to ``path`` (PNG) and return the path."""
    import matplotlib.image
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    matplotlib.image.imsave(path, draw_bev(points, **scene))
    return path


def _height_colors(z: np.ndarray) -> np.ndarray:
    if not len(z):
        return np.zeros((0, 3))
    lo, hi = np.percentile(z, [1, 99])
    norm = np.clip((z - lo) / max(hi - lo, 1e-3), 0, 1)
    return POINT_CMAP(norm)[:, :3]


def _scene_geometry(points, **scene) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                              np.ndarray, int]:
    """Vertices (points then box corners), their RGB, edges (E, 2) into the vertices and
    edge RGB (RGB as floats in [0, 1]), and the number of points."""
    pts = _np(points, 3, 'points')[:, :3] if points is not None else np.zeros((0, 3))
    boxes = _box_sets(**scene)
    vertices = np.concatenate([pts, boxes.corners.reshape(-1, 3)])
    vertex_rgb = np.concatenate([_height_colors(pts[:, 2]),
                                 np.repeat(np.asarray(boxes.colors).reshape(-1, 3), 8, 0)])
    edges = (len(pts) + 8 * np.arange(len(boxes.corners))[:, None, None]
             + np.asarray(BOX_EDGES)[None]).reshape(-1, 2)
    edge_rgb = np.repeat(np.asarray(boxes.colors).reshape(-1, 3), len(BOX_EDGES), 0)
    return vertices, vertex_rgb, edges, edge_rgb, len(pts)


def write_scene_ply(path: str, points, gt_boxes=None, gt_labels=None, pred_boxes=None,
                    pred_labels=None, pred_scores=None, classes=None, styles=None) -> str:
    """Write the points and the boxes' edges to one ASCII PLY (see the module doc).

    All points are written (no range crop, no subsampling): a 3D viewer can navigate them.
    Returns the path.
    """
    vertices, vertex_rgb, edges, edge_rgb, _ = _scene_geometry(
        points, gt_boxes=gt_boxes, gt_labels=gt_labels, pred_boxes=pred_boxes,
        pred_labels=pred_labels, pred_scores=pred_scores, classes=classes, styles=styles)
    to_u8 = lambda rgb: np.clip(np.round(rgb * 255), 0, 255).astype(np.int64)  # noqa: E731
    header = ['ply', 'format ascii 1.0', 'comment ssl_det scene: points then 8 corners per box',
              f'element vertex {len(vertices)}', 'property float x', 'property float y',
              'property float z', 'property uchar red', 'property uchar green',
              'property uchar blue', f'element edge {len(edges)}', 'property int vertex1',
              'property int vertex2', 'property uchar red', 'property uchar green',
              'property uchar blue', 'end_header']
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(header) + '\n')
        if len(vertices):
            np.savetxt(f, np.concatenate([vertices, to_u8(vertex_rgb)], axis=1),
                       fmt=['%.4f'] * 3 + ['%d'] * 3)
        if len(edges):
            np.savetxt(f, np.concatenate([edges, to_u8(edge_rgb)], axis=1), fmt='%d')
    return path


def _render_open3d(npz_path: str, png_path: str) -> None:
    """Render a scene saved by :func:`render_perspective_png` with open3d's offscreen renderer.

    Self-contained (numpy and open3d only): its source also runs in a child process.
    """
    import numpy as np
    import open3d as o3d
    from open3d.visualization import rendering
    data = np.load(npz_path)
    width, height = (int(v) for v in data['size'])
    renderer = rendering.OffscreenRenderer(width, height)
    renderer.scene.set_background([0.07, 0.07, 0.07, 1.0])
    num_points = int(data['num_points'])
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(data['vertices'][:num_points]))
    cloud.colors = o3d.utility.Vector3dVector(data['vertex_rgb'][:num_points])
    material = rendering.MaterialRecord()
    material.shader, material.point_size = 'defaultUnlit', 2.0
    renderer.scene.add_geometry('points', cloud, material)
    if len(data['edges']):
        lines = o3d.geometry.LineSet(o3d.utility.Vector3dVector(data['vertices']),
                                     o3d.utility.Vector2iVector(data['edges']))
        lines.colors = o3d.utility.Vector3dVector(data['edge_rgb'])
        line_material = rendering.MaterialRecord()
        line_material.shader, line_material.line_width = 'unlitLine', 2.0
        renderer.scene.add_geometry('boxes', lines, line_material)
    renderer.setup_camera(float(data['fov']), data['center'], data['eye'], [0.0, 0.0, 1.0])
    o3d.io.write_image(png_path, renderer.render_to_image())


def render_perspective_png(path: str, points, gt_boxes=None, gt_labels=None, pred_boxes=None,
                           pred_labels=None, pred_scores=None, classes=None, styles=None,
                           point_cloud_range=None, size: Tuple[int, int] = (1280, 720),
                           eye: Sequence[float] = (-12.0, 0.0, 8.0),
                           center: Optional[Sequence[float]] = None, fov: float = 60.0,
                           isolate: bool = True, timeout: float = 120.0) -> RenderResult:
    """Render a perspective PNG (width, height = ``size``) with open3d's offscreen renderer.

    The camera sits at ``eye`` (default 12 m behind and 8 m above the sensor) and looks at
    ``center`` (default: 20 m ahead on the ground, or the range's centre when nearer), z up.
    Points outside ``point_cloud_range`` are left out. With ``isolate`` (default) the
    renderer runs in a child process, so a driver that aborts cannot take the caller down.

    Returns:
        RenderResult: ``(True, path)`` when written, else ``(False, reason)``, e.g.
        ``'RuntimeError: Failed to load vulkan library!'`` on a host without Vulkan/EGL.
    """
    scene = dict(gt_boxes=gt_boxes, gt_labels=gt_labels, pred_boxes=pred_boxes,
                 pred_labels=pred_labels, pred_scores=pred_scores, classes=classes,
                 styles=styles)
    pts = _np(points, 3, 'points') if points is not None else np.zeros((0, 3))
    if point_cloud_range is not None and len(point_cloud_range) == 6:
        lo, hi = np.asarray(point_cloud_range[:3]), np.asarray(point_cloud_range[3:])
        pts = pts[((pts[:, :3] >= lo) & (pts[:, :3] <= hi)).all(axis=1)]
    vertices, vertex_rgb, edges, edge_rgb, num_points = _scene_geometry(pts, **scene)
    if center is None:
        ahead = 20.0
        if point_cloud_range is not None and len(point_cloud_range) == 6:
            ahead = min(ahead, (point_cloud_range[0] + point_cloud_range[3]) / 2)
        center = (ahead, 0.0, -1.7)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        npz = osp.join(tmp, 'scene.npz')
        np.savez(npz, vertices=vertices, vertex_rgb=vertex_rgb,
                 edges=edges.astype(np.int32).reshape(-1, 2), edge_rgb=edge_rgb,
                 num_points=num_points, size=np.asarray(size), eye=np.asarray(eye, float),
                 center=np.asarray(center, float), fov=np.asarray(fov))
        try:
            if not isolate:
                _render_open3d(npz, path)
            else:
                _run_child(npz, path, timeout)
        except RenderError as exc:  # the child's own last error line
            return RenderResult(False, str(exc))
        except Exception as exc:  # noqa: BLE001 - any renderer failure is reported, not raised
            return RenderResult(False, f'{type(exc).__name__}: {exc}'.strip())
    if not osp.isfile(path) or osp.getsize(path) == 0:
        return RenderResult(False, f'the renderer reported success but wrote no file {path}')
    return RenderResult(True, path)


class RenderError(RuntimeError):
    """The child renderer failed; the message is its last error line."""


def _run_child(npz: str, png: str, timeout: float) -> None:
    code = (inspect.getsource(_render_open3d)
            + '\nimport sys\n_render_open3d(sys.argv[1], sys.argv[2])\n')
    try:
        proc = subprocess.run([sys.executable, '-c', code, npz, png], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f'open3d renderer did not finish within {timeout:g} s') from exc
    if proc.returncode == 0:
        return
    lines = [re.sub(r'\x1b\[[0-9;]*m', '', line).strip() for line in proc.stderr.splitlines()]
    lines = [line for line in lines if line]
    if proc.returncode < 0:
        raise RenderError(f'open3d renderer was killed by signal {-proc.returncode}'
                          + (f' after: {lines[-1]}' if lines else ''))
    raise RenderError(lines[-1] if lines else f'open3d renderer exited with '
                      f'{proc.returncode} and no message')
