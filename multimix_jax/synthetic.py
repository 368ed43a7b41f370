"""Procedural chest-X-ray-like images with exact lung masks: the embedded default dataset.

No downloads: every example is drawn from ``np.random.default_rng([seed, index])`` alone, so
it is deterministic per ``(seed, index)`` and available at any size. It is a *sketch* of a
posterior-anterior chest radiograph in standard display (the patient's right on the image
left), with the parts that matter for MultiMix:

* segmentation target: two lung fields of varied, asymmetric shape (the patient's right lung,
  image left, is wider; the heart shadow covers the lower medial part of the patient's left
  lung, image right, and the mask excludes it as real lung masks do);
* classification target: PNEUMONIA images carry patchy opacities (1-5 clusters of blurred
  bright blobs, lower zones favoured) inside the lungs, a quarter of them faint and about a
  third small; NORMAL images have none but get confounders (prominent vessel markings,
  diffuse haze from poor inspiration, nipple shadows), and every image gets random exposure,
  contrast, gamma, pose and anatomy, so global intensity is not a shortcut.

Difficulty (measured at 128 px, 1000 held-out examples): logistic regression on 32x32
pixels with 100 labels scores about 0.6-0.7 on held-out data; a small CNN with 2000 labels
about 0.9.

Rendering works on a density map (higher = brighter, as on film) in normalised coordinates
``x, y in [-1, 1]`` (``y`` down) and is computed directly at the requested size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["make_example", "SyntheticCXR"]


def _pose(rng: np.random.Generator) -> tuple:
    """Patient pose: tilt (radians), zoom, shift (x, y) of the body in the image."""
    tilt = rng.uniform(-0.06, 0.06)
    zoom = rng.uniform(0.93, 1.07)
    sx, sy = rng.uniform(-0.05, 0.05, size=2)
    return tilt, zoom, sx, sy


def _pose_grid(pose, size: int):
    """Body-frame coordinates (X, Y) of every pixel, given the pose."""
    tilt, zoom, sx, sy = pose
    c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0)
    ct, st = np.float32(np.cos(tilt) / zoom), np.float32(np.sin(tilt) / zoom)
    x = c[None, :] - np.float32(sx)
    y = c[:, None] - np.float32(sy)
    return x * ct + y * st, y * ct - x * st


def _to_image(x, y, pose):
    """Inverse of :func:`_pose_grid`: body-frame points to normalised image coordinates."""
    tilt, zoom, sx, sy = pose
    ct, st = np.cos(tilt) * zoom, np.sin(tilt) * zoom
    return x * ct - y * st + sx, y * ct + x * st + sy


def _pow(x, p):
    """``x ** p`` for ``x >= 0`` via exp/log (float32 ``**`` is very slow on zeros and ints)."""
    return np.exp(np.log(np.maximum(x, np.float32(1e-30))) * p)


def _soft(f: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased indicator of ``f > 0`` (``f`` ~ signed distance), 0.5 on the boundary."""
    return np.clip(0.5 + f * (0.5 / width), 0.0, 1.0)


def _lung_params(rng: np.random.Generator, side: int) -> dict:
    """Random shape of one lung. side=-1: image left (patient's right, wider, higher dome)."""
    right = side < 0
    a_med = rng.uniform(0.11, 0.16)
    gap = rng.uniform(0.07, 0.12)  # midline to medial border (room for the spine)
    return dict(
        side=side,
        cx=side * (gap + a_med),
        cy=rng.uniform(-0.08, 0.04),
        a_med=a_med,
        a_lat=rng.uniform(0.31, 0.4) * (1.08 if right else 1.0),
        b=rng.uniform(0.6, 0.7) * (0.97 if right else 1.0),
        n_med=rng.uniform(3.0, 4.5),  # squarer: near-straight medial border
        n_lat=rng.uniform(1.9, 2.6),  # rounder: convex lateral border, rounded apex
        taper=rng.uniform(0.15, 0.4),  # apex narrower than base
        harm=[(k, rng.uniform(0.0, 0.05) / k * 2, rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4, 5)],
        d_lat=rng.uniform(0.8, 0.92),  # costophrenic angle depth (fraction of b below centre)
        dome=rng.uniform(0.18, 0.35) * (1.15 if right else 1.0),
        dome_p=rng.uniform(0.4, 0.8),
    )


def _lung_field(X, Y, p) -> np.ndarray:
    """Approximate signed distance (>0 inside) of one lung: a deformed two-sided superellipse
    (straight medial, convex lateral, tapered apex, low-order radial wobble) cut from below by
    the diaphragm dome, which is lowest laterally (the sharp costophrenic angle)."""
    s, b = p["side"], p["b"]
    u = (X - p["cx"]) * s  # + lateral
    vb = (Y - p["cy"]) * (1.0 / b)  # + down
    lat = u > 0
    a = np.where(lat, p["a_lat"] * (1.0 + p["taper"] * np.clip(vb, -1.0, 1.0)), p["a_med"])
    n = np.where(lat, np.float32(p["n_lat"]), np.float32(p["n_med"]))
    un = u / a
    rho = _pow(_pow(np.abs(un), n) + _pow(np.abs(vb), n), 1.0 / n)
    theta = np.arctan2(vb, un)
    r = 1.0
    for k, amp, ph in p["harm"]:
        r = r + np.float32(amp) * np.cos(k * theta + np.float32(ph))
    f_shape = (r - rho) * np.float32(0.5 * (p["a_lat"] + b) * 0.6)
    # diaphragm: y_d(u) falls from the medial side to the lateral costophrenic angle
    t = np.clip((p["a_lat"] - u) * (1.0 / (p["a_lat"] + p["a_med"])), 0.0, 1.0)
    y_d = p["cy"] + b * (p["d_lat"] - p["dome"] * _pow(t, np.float32(p["dome_p"])))
    return np.minimum(f_shape, y_d - Y)


def _drop_specks(mask: np.ndarray) -> np.ndarray:
    """Remove pixel-sized islands that sampling can leave at sharp tips (costophrenic angles,
    heart border), so each lung is one connected region."""
    lab, n = ndimage.label(mask)
    if n <= 2:
        return mask
    area = np.bincount(lab.ravel())
    keep = area >= max(2, 0.02 * area[1:].max())
    keep[0] = False
    return keep[lab]


def _heart_params(rng: np.random.Generator, left: dict) -> dict:
    """Random heart: a tilted ellipse lower centre-right in the image (patient's left), from
    just right of the spine to its apex down-laterally, sitting on the diaphragm."""
    left_edge = rng.uniform(-0.17, -0.08)  # right heart border, just right of the spine
    right_edge = rng.uniform(0.4, 0.6)  # left heart border (apex)
    hy = left["cy"] + left["b"] * rng.uniform(0.55, 0.75)
    hb = rng.uniform(0.23, 0.3)
    ang = rng.uniform(0.4, 0.7)
    # keep the apex medial to the lateral chest wall so the lung is never cut in two
    right_edge = min(right_edge, left["cx"] + left["a_lat"] * 0.85 - 0.05)
    hx, reach = 0.5 * (left_edge + right_edge), 0.5 * (right_edge - left_edge)
    # the tilted ellipse spans hx +- sqrt(ha^2 cos^2 + hb^2 sin^2) horizontally
    hb = min(hb, 0.8 * reach / np.sin(ang))
    ha = np.sqrt(reach ** 2 - (hb * np.sin(ang)) ** 2) / np.cos(ang)
    hb = min(hb, ha)
    half_h = np.hypot(ha * np.sin(ang), hb * np.cos(ang))
    return dict(hx=hx, hy=hy, ha=float(ha), hb=float(hb), ang=ang,
                box=(hx - reach, hx + reach, hy - half_h, hy + half_h))


def _heart_field(X, Y, h: dict) -> np.ndarray:
    """Approximate signed distance (>0 inside) of the heart ellipse."""
    ca, sa = np.float32(np.cos(h["ang"])), np.float32(np.sin(h["ang"]))
    dx, dy = X - h["hx"], Y - h["hy"]
    p, q = (dx * ca + dy * sa) * (1.0 / h["ha"]), (dy * ca - dx * sa) * (1.0 / h["hb"])
    return (1.0 - np.sqrt(p * p + q * q)) * np.float32(h["hb"])


def _lung_box(p: dict) -> tuple:
    """Body-frame box (x0, x1, y0, y1) that contains the lung (wobble is below 13 %)."""
    u0, u1 = -1.2 * p["a_med"], 1.2 * p["a_lat"] * (1.0 + p["taper"])
    xs = sorted((p["cx"] + p["side"] * u0, p["cx"] + p["side"] * u1))
    return xs[0], xs[1], p["cy"] - 1.2 * p["b"], p["cy"] + p["b"]


def _field_in_box(fn, X, Y, arg, box, pose, size: int) -> np.ndarray:
    """Evaluate a signed-distance ``fn(X, Y, arg)`` only on the pixels of a body-frame box
    (plus a margin); -1 (far outside) elsewhere. Saves most of the work at large sizes."""
    x0, x1, y0, y1 = box
    ix, iy = _to_image(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]), pose)
    lo = lambda v: max(int(np.floor((v.min() + 1.0) * size / 2.0)) - 3, 0)  # noqa: E731
    hi = lambda v: min(int(np.ceil((v.max() + 1.0) * size / 2.0)) + 3, size)  # noqa: E731
    sl = (slice(lo(iy), hi(iy)), slice(lo(ix), hi(ix)))
    out = np.full(X.shape, -1.0, np.float32)
    out[sl] = fn(X[sl], Y[sl], arg)
    return out


def _body(rng: np.random.Generator, X, Y, px: float) -> np.ndarray:
    """Soft-tissue density of the torso: a rounded-rectangular outline flaring into the
    shoulders at the top, thin laterally and thick in the middle (mediastinum, abdomen);
    air (0) outside."""
    bx = rng.uniform(0.86, 0.97)
    n = rng.uniform(2.5, 4.0)
    shoulder = 1.0 + rng.uniform(0.1, 0.3) * np.clip((-0.5 - Y) * 2.5, 0.0, 1.0) ** 2
    belly = 1.0 - rng.uniform(0.0, 0.08) * np.clip(Y - 0.3, 0.0, 1.0)
    w = bx * shoulder * belly
    rho = np.abs(X / w)
    thick = np.sqrt(np.clip(1.0 - _pow(rho, np.float32(n)), 0.0, 1.0))
    central = np.exp(-((X * (1.0 / rng.uniform(0.35, 0.5))) ** 2))
    return (thick * (0.6 + 0.4 * central)) * _soft((1.0 - rho) * bx, 1.5 * px)


def _bones(rng: np.random.Generator, X, Y, lungs, size: int):
    """Bright bones. Returns (ribs, rest): posterior ribs (arcs rising from the spine, then
    curving down laterally, spacing growing downwards) plus fainter anterior ribs of opposite
    obliquity; rest = clavicles and the spine (vertical band with vertebral bodies)."""
    top = min(p["cy"] - p["b"] for p in lungs) - 0.04
    bot = max(p["cy"] + p["b"] * p["d_lat"] for p in lungs) + 0.04
    h = bot - top
    u = np.abs(X)
    n_ribs = rng.uniform(8.5, 10.5)
    c1, c2 = rng.uniform(0.2, 0.5), rng.uniform(0.9, 1.4)
    yr = Y - (c2 * u - c1) * u - top
    phase = _pow(np.clip(yr * (1.0 / h), 0.0, 1.5), np.float32(rng.uniform(0.8, 0.95))) * n_ribs
    band = np.cos((2 * np.pi) * phase + rng.uniform(0, 2 * np.pi))
    thr = np.float32(rng.uniform(0.3, 0.5))
    ribs = np.clip(band - thr, 0.0, None) * (1.0 / (1.0 - thr))
    ya = Y + (0.5 - 0.3 * u) * u
    ant = np.cos((2 * np.pi * n_ribs * 0.5 / h) * ya + rng.uniform(0, 2 * np.pi))
    ant = np.clip(ant - 0.4, 0.0, None)
    wide = max(abs(p["cx"]) + p["a_lat"] * (1 + p["taper"]) for p in lungs) + 0.1
    ex, ey = (X * (1.0 / wide)) ** 2, ((Y - 0.5 * (top + bot)) * (1.0 / (0.6 * h))) ** 2
    env = np.clip((1.0 - ex * ex - ey * ey) * 3.0, 0.0, 1.0)
    # fade ribs whose period nears the pixel pitch (tiny images) instead of aliasing them
    fade = np.clip((h / n_ribs * size / 2.0 - 1.5) / 3.0, 0.2, 1.0)
    ribs = (ribs * rng.uniform(0.08, 0.14) + ant * rng.uniform(0.04, 0.08)) * (env * fade)
    # clavicles
    cl_y = top + rng.uniform(-0.02, 0.06) - rng.uniform(0.25, 0.4) * u + 0.15 * u * u
    cl = np.exp(-(((Y - cl_y) * (1.0 / rng.uniform(0.03, 0.045))) ** 2))
    rest = cl * (_soft(0.7 - u, 0.05) * _soft(u - 0.07, 0.03) * rng.uniform(0.1, 0.18))
    # spine: band, brighter downwards, vertebral bodies as a periodic modulation
    sw = rng.uniform(0.07, 0.1)
    vert = 1.0 + 0.2 * np.cos((2 * np.pi / rng.uniform(0.11, 0.15)) * Y + rng.uniform(0, 2 * np.pi))
    spine = np.exp(-(((X * (1.0 / sw)) ** 2) ** 2)) * vert
    spine *= 0.6 + 0.3 * np.clip(Y + 0.6, 0.0, 1.5)
    rest += spine * rng.uniform(0.1, 0.2)
    return ribs, rest


def _vessels(rng: np.random.Generator, lungs, size: int, strength: float, extra: bool):
    """Vessel markings: tapered random-walk branches radiating from each hilum, rendered as
    points (bincount) and blurred; visible only where the image shows lung."""
    step = 0.6 * 2.0 / size  # normalised units per point (~0.6 px)
    xs, ys, ws = [], [], []
    for p in lungs:
        s = p["side"]
        nb = rng.integers(8, 13) + (6 if extra else 0)
        hx = p["cx"] - s * p["a_med"] * rng.uniform(0.3, 0.8, nb)[:, None]
        hy = p["cy"] + p["b"] * rng.uniform(-0.25, 0.35, nb)[:, None]
        length = p["b"] * rng.uniform(0.4, 0.85, size=nb)
        nst = int(np.ceil(length.max() / step))
        ang0 = rng.uniform(-1.7, 1.5, size=nb)  # around lateral, biased upward/downward
        ang = ang0[:, None] + np.cumsum(rng.normal(0, 0.09, size=(nb, nst)), axis=1)
        dx = s * np.cos(ang) * step
        dy = np.sin(ang) * step
        bx, by = hx + np.cumsum(dx, 1), hy + np.cumsum(dy, 1)
        t = np.arange(nst) * step
        w = np.clip(1.0 - t[None, :] / length[:, None], 0.0, None) ** 1.5
        w *= 0.6 + 0.4 * (t[None, :] > 0.06)  # dimmer at the hilum, where branches overlap
        xs += [bx.ravel()]; ys += [by.ravel()]; ws += [w.ravel()]
        # side branches from random points on the main ones
        nsb = nb * 2
        src = rng.integers(0, nb, nsb)
        at = rng.integers(nst // 6, max(nst // 6 + 1, nst * 2 // 3), nsb)
        nst2 = max(nst // 2, 2)
        turn = rng.choice([-1, 1], nsb)[:, None] * rng.uniform(0.3, 0.8, (nsb, 1))
        ang2 = ang[src, at][:, None] + turn
        ang2 = ang2 + np.cumsum(rng.normal(0, 0.1, size=(nsb, nst2)), axis=1)
        bx2 = bx[src, at][:, None] + np.cumsum(s * np.cos(ang2) * step, 1)
        by2 = by[src, at][:, None] + np.cumsum(np.sin(ang2) * step, 1)
        len2 = nst2 * rng.uniform(0.4, 1.0, (nsb, 1))
        w2 = w[src, at][:, None] * np.clip(1.0 - np.arange(nst2)[None, :] / len2, 0.0, None)
        xs += [bx2.ravel()]; ys += [by2.ravel()]; ws += [0.7 * w2.ravel()]
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    return x, y, w * strength


def _render_points(x, y, w, pose, size: int, sigma_px: float) -> np.ndarray:
    """Splat weighted body-frame points into the image (bincount) and blur them."""
    ix, iy = _to_image(x, y, pose)
    col = np.floor((ix + 1.0) * (size / 2.0)).astype(np.int64)
    row = np.floor((iy + 1.0) * (size / 2.0)).astype(np.int64)
    ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    img = np.bincount(row[ok] * size + col[ok], weights=w[ok], minlength=size * size)
    img = img.reshape(size, size).astype(np.float32)
    return ndimage.gaussian_filter(img, sigma_px, truncate=3.0)


def _blobs(cx, cy, sx, sy, amp, size: int) -> np.ndarray:
    """Sum of axis-aligned Gaussian blobs (image coordinates), as one separable matmul."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0)
    col = lambda v: np.asarray(v, np.float32)[:, None]  # noqa: E731
    gx = np.exp(-0.5 * ((c[None, :] - col(cx)) / col(sx)) ** 2)
    gy = np.exp(-0.5 * ((c[None, :] - col(cy)) / col(sy)) ** 2)
    return (gy * col(amp)).T @ gx


def _smooth_field(rng: np.random.Generator, size: int, rank: int, max_freq: float) -> np.ndarray:
    """Low-frequency field: a sum of ``rank`` products of random 1-D cosine series."""
    c = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    out = np.zeros((size, size), np.float32)
    for _ in range(rank):
        fy, fx = rng.uniform(0.2, max_freq, 2)
        py, px = rng.uniform(0, 2 * np.pi, 2)
        out += np.outer(np.cos(np.pi * fy * c + py), np.cos(np.pi * fx * c + px)).astype(np.float32)
    return out * (1.0 / rank)


def make_example(index: int, seed: int = 0, size: int = 128, pneumonia_fraction: float = 0.5,
                 *, _with_opacities: bool = True) -> dict:
    """One synthetic chest X-ray: ``{'image': uint8 (size, size), 'mask': uint8 {0,1} lung
    fields, 'label': 0 NORMAL / 1 PNEUMONIA}``, a pure function of ``(seed, index)``.

    ``_with_opacities=False`` renders the identical example without the pneumonia opacities
    (for tests); every random draw is made either way.
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = np.random.default_rng([int(seed), int(index)])
    label = int(rng.random() < pneumonia_fraction)
    px = 2.0 / size  # one pixel in normalised units

    # --- anatomy and its exact mask
    pose = _pose(rng)
    X, Y = _pose_grid(pose, size)
    lungs = [_lung_params(rng, -1), _lung_params(rng, 1)]
    f_lung = np.maximum(*[_field_in_box(_lung_field, X, Y, p, _lung_box(p), pose, size)
                          for p in lungs])
    heart_p = _heart_params(rng, lungs[1])
    f_heart = _field_in_box(_heart_field, X, Y, heart_p, heart_p["box"], pose, size)
    mask = (f_lung > 0) & (f_heart <= 0)
    mask = _drop_specks(mask)
    edge = 0.9 * px
    heart = _soft(f_heart, edge)
    lung = _soft(f_lung, edge) * (1.0 - heart)  # the lung field the image shows
    depth = lung * (0.7 + 0.3 * np.clip(f_lung * 8.0, 0.0, 1.0))  # more air centrally

    # --- density map: tissue + bones + heart - air
    body = _body(rng, X, Y, px)
    tissue = rng.uniform(0.6, 0.75)
    air = rng.uniform(0.38, 0.52)  # how much darker aerated lung is
    ribs, bones = _bones(rng, X, Y, lungs, size)
    dens = tissue * body + bones + ribs * (0.2 + 0.8 * lung)  # ribs show best over air
    low = max(p["cy"] + p["b"] * p["d_lat"] for p in lungs)
    dens += heart * np.clip((low - Y) * 8.0, 0.0, 1.0) * rng.uniform(0.02, 0.06)
    # lower lungs overlapped by soft tissue (breasts, diaphragm): less dark inferiorly
    breast = rng.random() < 0.4
    lower = np.clip((Y - rng.uniform(0.05, 0.3)) * 2.5, 0.0, 1.0)
    lower *= rng.uniform(0.05, 0.2) * breast

    # NORMAL-only confounders (drawn for every image to keep the random stream aligned)
    haze_on = rng.random() < 0.35 and label == 0  # poor inspiration / under-exposure
    haze = rng.uniform(0.06, 0.18)
    prominent = rng.random() < 0.4 and label == 0  # prominent vessel markings
    nipple_on = rng.random() < 0.15 and label == 0  # nipple shadows: small round opacities
    nip_y, nip_dx = rng.uniform(0.25, 0.45), rng.uniform(-0.03, 0.03)
    dens -= (air * (1.0 - haze * haze_on)) * (1.0 - lower) * depth

    vstrength = rng.uniform(0.25, 0.55) * (1.6 if prominent else 1.0)
    vx, vy, vw = _vessels(rng, lungs, size, vstrength, prominent)
    vess = _render_points(vx, vy, vw, pose, size, max(0.6, 0.45 * size / 128))
    dens += vess * lung * (air * 0.55)

    if nipple_on:
        nx = [p["cx"] + p["side"] * p["a_lat"] * 0.35 + nip_dx for p in lungs]
        ny = [p["cy"] + p["b"] * nip_y for p in lungs]
        nx, ny = _to_image(np.array(nx), np.array(ny), pose)
        dens += _blobs(nx, ny, [0.02] * 2, [0.02] * 2, [0.1, 0.1], size) * lung

    # --- pneumonia: clusters of blurred blobs, seeded at random lung pixels
    n_clusters = int(rng.integers(1, 6))
    faint = rng.random() < 0.25  # hard cases: faint
    strength = rng.uniform(0.2, 0.4) if faint else rng.uniform(0.5, 1.0)
    small = rng.random() < 0.3  # hard cases: small
    lung_idx = np.flatnonzero(mask)
    bx, by, bsx, bsy, bamp = [], [], [], [], []
    for _ in range(n_clusters):
        # seed pixel: the lower of two random lung pixels (lower lobes are favoured)
        k = rng.integers(len(lung_idx), size=2).max() if len(lung_idx) else 0
        k = lung_idx[k] if len(lung_idx) else size * size // 2
        rad = rng.uniform(0.04, 0.09) if small else rng.uniform(0.09, 0.25)
        nb = int(rng.integers(5, 16))
        offs = rng.normal(0.0, rad, size=(nb, 2))
        sig = rng.uniform(0.25, 0.6, size=(nb, 1)) * rad * rng.uniform(0.8, 1.25, size=(nb, 2))
        bx += list((k % size + 0.5) * px - 1.0 + offs[:, 0])
        by += list((k // size + 0.5) * px - 1.0 + offs[:, 1])
        bsx += list(sig[:, 0]); bsy += list(sig[:, 1])
        bamp += list(rng.uniform(0.4, 1.0, size=nb))
    mottle = 0.6 + 0.8 * np.clip(_smooth_field(rng, size, 3, 8.0) + 0.5, 0.0, 1.0)
    if label == 1 and _with_opacities:
        op = 1.0 - np.exp(-2.0 * _blobs(bx, by, bsx, bsy, bamp, size))  # saturates (consolidation)
        dens += op * mottle * lung * (air * strength)

    # --- acquisition: exposure, contrast, gamma, low-frequency drift, noise
    dens += _smooth_field(rng, size, 2, 1.5) * rng.uniform(0.02, 0.06)
    gain = rng.uniform(0.85, 1.2)
    bias = rng.uniform(-0.08, 0.08)
    gamma = rng.uniform(0.75, 1.35)
    img = _pow(np.clip(dens * gain + bias + 0.08, 0.0, 1.0), np.float32(gamma))
    noise = rng.standard_normal((size, size), dtype=np.float32)
    img += noise * np.float32(rng.uniform(0.01, 0.03))
    img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return {"image": img, "mask": mask.astype(np.uint8), "label": label}


class SyntheticCXR:
    """Grain-compatible random-access source of :func:`make_example` examples.

    Element ``i`` is ``make_example(offset + i, seed, size, pneumonia_fraction)``; use disjoint
    ``offset`` ranges for train/val/test splits drawn from one seed.
    """

    def __init__(self, num_examples: int, seed: int = 0, size: int = 128,
                 pneumonia_fraction: float = 0.5, offset: int = 0):
        if num_examples < 0:
            raise ValueError(f"num_examples must be >= 0, got {num_examples}")
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.size = int(size)
        self.pneumonia_fraction = float(pneumonia_fraction)
        self.offset = int(offset)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, i) -> dict:
        i = int(i)
        if i < 0:
            i += self.num_examples
        if not 0 <= i < self.num_examples:
            raise IndexError(f"index {i} out of range for length {self.num_examples}")
        return make_example(self.offset + i, self.seed, self.size, self.pneumonia_fraction)

    def __repr__(self) -> str:
        return (f"SyntheticCXR(num_examples={self.num_examples}, seed={self.seed}, "
                f"size={self.size}, pneumonia_fraction={self.pneumonia_fraction}, "
                f"offset={self.offset})")
