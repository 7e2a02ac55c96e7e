// Geometry of rotated boxes seen from above, shared by the CPU loops and the CUDA kernels.
//
// A box is (x, y, w, l, yaw) or (x, y, z, dx, dy, dz, yaw): centre, size along its local x
// and y axes, and yaw counter-clockwise from +x; its corners are the local corners
// (+-w/2, +-l/2) rotated by [[cos, -sin], [sin, cos]] (mmcv's box_iou_rotated convention).
// z is the box centre, so it spans [z - dz/2, z + dz/2].
//
// Everything is computed in double whatever the input dtype: a pair's intersection is a
// difference of products of coordinates, and with coordinates of 1e4..1e5 float32 would
// lose most digits of a small overlap. Corners are stored relative to their own box centre
// and a pair is clipped in the frame of the first box's centre, so the products stay small.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define SSL_HD __host__ __device__ __forceinline__
#else
#define SSL_HD inline
#endif

namespace ssl_det {
namespace rotated {

// Everything a pair test needs about one box, computed once per box rather than per pair.
struct BoxGeom {
  double cx, cy;                    // centre
  double xmin, xmax, ymin, ymax;    // axis-aligned bounds, for the cheap rejection test
  double zlo, zhi;                  // vertical extent (3D boxes)
  double area, volume;              // BEV area w * l and volume area * dz
  double px[4], py[4];              // corners relative to the centre, counter-clockwise
};

// Reads one box row of `ncols` (5 or 7) values.
template <typename T>
SSL_HD BoxGeom make_geom(const T* box, int ncols) {
  const bool is3d = ncols == 7;
  const double x = static_cast<double>(box[0]);
  const double y = static_cast<double>(box[1]);
  const double w = static_cast<double>(is3d ? box[3] : box[2]);
  const double l = static_cast<double>(is3d ? box[4] : box[3]);
  const double yaw = static_cast<double>(box[ncols - 1]);
  const double z = is3d ? static_cast<double>(box[2]) : 0.0;
  const double dz = is3d ? static_cast<double>(box[5]) : 0.0;
  const double c = cos(yaw), s = sin(yaw);
  const double hw = 0.5 * w, hl = 0.5 * l;
  const double lx[4] = {-hw, hw, hw, -hw};
  const double ly[4] = {-hl, -hl, hl, hl};
  BoxGeom g;
  g.cx = x;
  g.cy = y;
  for (int k = 0; k < 4; ++k) {
    g.px[k] = c * lx[k] - s * ly[k];
    g.py[k] = s * lx[k] + c * ly[k];
  }
  const double ex = fabs(c * hw) + fabs(s * hl);
  const double ey = fabs(s * hw) + fabs(c * hl);
  g.xmin = x - ex;
  g.xmax = x + ex;
  g.ymin = y - ey;
  g.ymax = y + ey;
  g.zlo = z - 0.5 * dz;
  g.zhi = z + 0.5 * dz;
  g.area = w * l;
  g.volume = g.area * dz;
  return g;
}

SSL_HD double height_overlap(const BoxGeom& a, const BoxGeom& b) {
  const double zlo = a.zlo > b.zlo ? a.zlo : b.zlo;
  const double zhi = a.zhi < b.zhi ? a.zhi : b.zhi;
  return zhi - zlo;
}

// True when the pair cannot overlap with positive area: the bounds are disjoint or touch,
// or either box is degenerate (w * l <= 0, or in 3D dz <= 0, which makes the height
// overlap <= 0 whatever the other box).
SSL_HD bool rejected(const BoxGeom& a, const BoxGeom& b, bool with_height) {
  if (a.xmax <= b.xmin || b.xmax <= a.xmin || a.ymax <= b.ymin || b.ymax <= a.ymin) return true;
  if (with_height && !(height_overlap(a, b) > 0.0)) return true;
  return !(a.area > 0.0) || !(b.area > 0.0);
}

// Capacity of the clipped polygon. Clipping a convex n-gon by a half-plane adds at most one
// vertex, so 4 clips of a quadrilateral give at most 8; rounding on near-collinear vertices
// can add a spurious crossing, so there is headroom, and points beyond it are dropped
// (they can only arise on slivers of near-zero area).
constexpr int kMaxVerts = 16;

// Area of the intersection of two counter-clockwise quadrilaterals (ax, ay) and (bx, by)
// in a common frame: Sutherland-Hodgman clipping of a by each edge of b, then the shoelace
// formula. A point counts as inside when it lies on the clip line (cross product exactly
// 0), so identical or touching boxes give the exact area; an edge is split only where the
// signs of its ends differ, so the division below never sees a zero denominator.
SSL_HD double quad_intersection_area(const double* ax, const double* ay, const double* bx,
                                     const double* by) {
  double px[kMaxVerts], py[kMaxVerts], qx[kMaxVerts], qy[kMaxVerts];
  int n = 4;
  for (int k = 0; k < 4; ++k) {
    px[k] = ax[k];
    py[k] = ay[k];
  }
  for (int e = 0; e < 4 && n > 0; ++e) {
    const double ex0 = bx[e], ey0 = by[e];
    const double dx = bx[(e + 1) & 3] - ex0, dy = by[(e + 1) & 3] - ey0;
    int m = 0;
    double s_cur = dx * (py[0] - ey0) - dy * (px[0] - ex0);
    for (int k = 0; k < n; ++k) {
      const int kn = k + 1 == n ? 0 : k + 1;
      const double s_next = dx * (py[kn] - ey0) - dy * (px[kn] - ex0);
      const bool in_cur = s_cur >= 0.0, in_next = s_next >= 0.0;
      if (in_cur && m < kMaxVerts) {
        qx[m] = px[k];
        qy[m] = py[k];
        ++m;
      }
      if (in_cur != in_next && m < kMaxVerts) {
        const double t = s_cur / (s_cur - s_next);
        qx[m] = px[k] + t * (px[kn] - px[k]);
        qy[m] = py[k] + t * (py[kn] - py[k]);
        ++m;
      }
      s_cur = s_next;
    }
    for (int k = 0; k < m; ++k) {
      px[k] = qx[k];
      py[k] = qy[k];
    }
    n = m;
  }
  if (n < 3) return 0.0;
  double twice_area = 0.0;
  for (int k = 0; k < n; ++k) {
    const int kn = k + 1 == n ? 0 : k + 1;
    twice_area += px[k] * py[kn] - px[kn] * py[k];
  }
  return twice_area > 0.0 ? 0.5 * twice_area : 0.0;
}

// IoU of one pair (BEV, or 3D when with_height): intersection / max(union, eps).
SSL_HD double pair_iou(const BoxGeom& a, const BoxGeom& b, bool with_height, double eps) {
  if (rejected(a, b, with_height)) return 0.0;
  // b's corners in the frame centred on a.
  const double ox = b.cx - a.cx, oy = b.cy - a.cy;
  double bx[4], by[4];
  for (int k = 0; k < 4; ++k) {
    bx[k] = ox + b.px[k];
    by[k] = oy + b.py[k];
  }
  double inter = quad_intersection_area(a.px, a.py, bx, by);
  double uni;
  if (with_height) {
    inter *= height_overlap(a, b);  // > 0: rejected() tested it
    uni = a.volume + b.volume - inter;
  } else {
    uni = a.area + b.area - inter;
  }
  return inter / (uni > eps ? uni : eps);
}

}  // namespace rotated
}  // namespace ssl_det
