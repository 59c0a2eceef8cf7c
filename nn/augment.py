"""Distorted digits, drawn anew every training step: affine, elastic, stroke width.

Written once against ``xp`` with nothing in place, so it runs eagerly on
NumPy and traced inside a jitted JAX step or epoch; the CUDA kernel
``augment_f32`` (backends/cuda/augment.cu) computes the same numbers.

One coordinate map, one sampling. For the output pixel at column ``q``, row
``r`` (centre ``c = 13.5``), the grey value is read at

    source = A^-1 (p - c) + c - t + d(p),     A = R(theta) H(k) S(sx, sy)

with bilinear interpolation and 0 outside the image (Simard et al. 2003):
``R`` a rotation (positive angles turn the digit counter-clockwise as
displayed, so +90 degrees equals ``np.rot90``), ``H`` a horizontal shear
``x + k y``, ``S`` independent x/y scales, ``t`` a shift in pixels and ``d``
Simard's elastic field: two fields uniform in [-1, 1] per pixel, each
smoothed by a Gaussian of std ``sigma`` px with zero padding (``G @ N @ G^T``),
times ``alpha``. That field is a linear map of white noise, so it is drawn
where it lives: in the eigenbasis of ``G = U diag(lam) U^T``, as
``B Z B^T`` with ``B = U_k diag(lam_k)`` and ``Z`` a k x k matrix of
uniforms in [-1, 1]. ``U^T N U`` has uncorrelated entries of the same
variance as ``N``'s, so the two fields have the same covariance, except for
the modes left out: the fewest k that keep all but 1e-6 of its variance
(8 of 28 for sigma 5), 12 times fewer random numbers and no 28 x 28
products. Before the warp, the source's stroke is blended toward its
4-neighbour dilation (thicker) or erosion (thinner) by a per-image
fraction, never a full 3x3 erosion (it deletes thin digits); the result is
clipped to [0, 1]. A fraction ``clean`` of each batch is left
untouched.

Random numbers come from the counter hash of ``backends.random``, keyed by
(seed, step, sample): the same seed gives the same augmented batch on every
backend, and a resumed run draws exactly what the uninterrupted one drew.
"""

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from backends import XpnetError
from backends.random import uniform_at_step

KINDS = ("none", "affine", "elastic")
SIDE = 28
CENTRE = (SIDE - 1) / 2
# The ``layer`` slots of augmentation's two random streams (dropout uses 0, 1, ...).
PARAMS_LAYER, FIELD_LAYER = 0xA000, 0xA001
# Per-sample uniforms, in this order, at counters sample * N_PARAMS + j.
CLEAN, ROTATE, SHEAR, SCALE_X, SCALE_Y, SHIFT_X, SHIFT_Y, STROKE_CHOICE, STROKE_AMOUNT = range(9)
N_PARAMS = 9
# How often a sample's stroke is thickened, or thinned (AUGMENT.md 7.2).
THICKEN_P, THIN_P = 0.5, 0.2

# (flag help, lowest, highest): the documented range of every parameter.
RANGES = {
    "rotate": ("largest rotation, degrees either way", 0.0, 90.0),
    "shear": ("largest horizontal shear k (x + k y) either way", 0.0, 1.0),
    "scale": ("largest change of x and y scale (independently), as a fraction", 0.0, 0.5),
    "shift": ("largest shift, pixels either way on each axis", 0.0, 8.0),
    "sigma": ("elastic: std of the Gaussian smoothing the displacement fields, px", 0.5, 20.0),
    "alpha": ("elastic: scale of the smoothed displacement fields (Simard's alpha)", 0.0, 200.0),
    "thicken": ("largest blend toward a 4-neighbour dilation (1: the full dilation)", 0.0, 1.0),
    "thin": ("largest blend toward a 4-neighbour erosion", 0.0, 1.0),
    "clean": ("fraction of each batch left undistorted", 0.0, 1.0),
}


@dataclass(frozen=True)
class Augment:
    """The distortion recipe of a run; ``kind`` none, affine or elastic (elastic includes affine).

    Defaults: the elastic field after Cireşan et al. 2010, milder (sigma 5,
    alpha 36: an RMS displacement of about 1.0 px, AUGMENT.md 7.2); the
    affine and stroke ranges wider than theirs, as people slant and size
    what they draw (chosen on drawings of validation digits, README
    "Reading drawings"): rotation up to 25 degrees, shear 0.4, x/y scale
    0.8-1.2, shift 2 px, strokes thickened (half the samples, up to a full
    dilation) or thinned (a fifth, up to half an erosion: a full one erases
    thin digits), 20% of each batch clean.
    """

    kind: str = "none"
    rotate: float = 25.0
    shear: float = 0.4
    scale: float = 0.2
    shift: float = 2.0
    sigma: float = 5.0
    alpha: float = 36.0
    thicken: float = 1.0
    thin: float = 0.5
    clean: float = 0.2

    def __post_init__(self):
        if self.kind not in KINDS:
            raise XpnetError(f"--augment {self.kind!r} is not one of {', '.join(KINDS)}")
        for name, (_, low, high) in RANGES.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise XpnetError(f"--aug-{name} {value!r} must be a number from {low:g} to {high:g}")

    @property
    def active(self):
        return self.kind != "none"

    def config(self):
        return asdict(self)

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict) or set(config) - {f.name for f in fields(cls)}:
            raise XpnetError(f"unreadable augmentation record {config!r}")
        return cls(**config)

    def describe(self):
        """One line for the run header: what is in force, with the elastic strength in pixels."""
        if not self.active:
            return "augment none"
        parts = [f"rotate {self.rotate:g} deg", f"shear {self.shear:g}", f"scale {self.scale:g}",
                 f"shift {self.shift:g} px"]
        if self.kind == "elastic":
            parts.append(f"elastic sigma {self.sigma:g} alpha {self.alpha:g} "
                         f"(RMS {rms_displacement(self.sigma, self.alpha):.2f} px)")
        parts.append(f"stroke +{self.thicken:g}/-{self.thin:g}, {self.clean:.0%} clean")
        return f"augment {self.kind}: " + ", ".join(parts)

    def field_basis(self):
        """The elastic field's basis (``field_basis``), for a kernel that draws the field itself."""
        return field_basis(float(self.sigma))

    def apply(self, xp, x, seed, step):
        """``x`` (batch, 784) distorted for training step ``step`` (an int or a device scalar)."""
        if not self.active:
            return x
        return augment_batch(xp, x, seed, step, self)

    def draws(self, xp, seed, step, batch):
        """What step ``step`` distorts its ``batch`` images by (``draw``), for a kernel that warps them itself."""
        return draw(xp, seed, step, batch, self)


def gaussian_matrix(xp, sigma, n=SIDE):
    """``G[i, j] = exp(-(i - j)^2 / 2 sigma^2) / (sigma sqrt(2 pi))``: zero-padded smoothing as ``G @ f``."""
    i = xp.arange(n, dtype=xp.float32)
    diff = i[:, None] - i[None, :]
    return (xp.exp(-(diff * diff) / xp.float32(2 * sigma * sigma)) / xp.float32(sigma * math.sqrt(2 * math.pi)))


@lru_cache(maxsize=32)
def field_basis(sigma, n=SIDE, left_out=1e-6):
    """``B`` (n, k) float32, read-only: ``B @ Z @ B.T`` has ``G @ N @ G.T``'s covariance when Z's
    entries are uncorrelated with N's variance, but for modes holding ``left_out`` of it."""
    lam, u = np.linalg.eigh(gaussian_matrix(np, sigma, n).astype(np.float64))
    order = np.argsort(-np.abs(lam))
    lam, u = lam[order], u[:, order]
    u *= np.where(u[np.abs(u).argmax(axis=0), np.arange(n)] < 0, -1.0, 1.0)  # one sign on every LAPACK
    # Mode pair (i, j) carries a share lam_i^2 lam_j^2 of the variance: the
    # first k modes on both sides keep (sum of the first k lam^2)^2 of it.
    kept = (np.cumsum(lam**2) / np.sum(lam**2)) ** 2
    k = int(np.argmax(kept >= 1 - left_out)) + 1
    basis = np.ascontiguousarray(u[:, :k] * lam[:k], dtype=np.float32)
    basis.flags.writeable = False
    return basis


def rms_displacement(sigma, alpha, n=SIDE):
    """The RMS, over pixels and draws, of one axis of the elastic field (closed form).

    Each noise value has variance 1/3 (uniform in [-1, 1]), so the smoothed
    field at (r, q) has variance alpha^2 / 3 * sum_i G[r, i]^2 * sum_j G[q, j]^2.
    """
    g2 = (gaussian_matrix(np, sigma, n).astype(np.float64) ** 2).sum(axis=1)
    return float(alpha * math.sqrt(np.mean(np.outer(g2, g2)) / 3.0))


def sample_parameters(xp, seed, step, batch, augment):
    """Per-sample (clean, inverse matrix entries, shift, signed stroke blend), each of shape (batch,)."""
    u = uniform_at_step(xp, seed, step, PARAMS_LAYER, (batch, N_PARAMS))
    # Times the identity: exact (each entry times 1, plus zeros), and XLA
    # never fuses a product into what reads it, so it hashes these numbers
    # once per sample. Without it, XLA's CPU compiler copies the counter hash
    # into every per-pixel loop that reads a parameter (its optimized HLO
    # shows it; README, What augmentation costs, has the epochs before and after).
    u = u @ xp.eye(N_PARAMS, dtype=u.dtype)
    v = u * 2 - 1
    theta = v[:, ROTATE] * xp.float32(augment.rotate * math.pi / 180)
    k = v[:, SHEAR] * xp.float32(augment.shear)
    sx = 1 + v[:, SCALE_X] * xp.float32(augment.scale)
    sy = 1 + v[:, SCALE_Y] * xp.float32(augment.scale)
    cos, sin = xp.cos(theta), xp.sin(theta)
    # A = R H S = [[cos sx, (cos k + sin) sy], [-sin sx, (cos - sin k) sy]]; det A = sx sy.
    det = sx * sy
    inverse = (
        (cos - sin * k) * sy / det, -(cos * k + sin) * sy / det,
        sin * sx / det, cos * sx / det,
    )
    shift = (v[:, SHIFT_X] * xp.float32(augment.shift), v[:, SHIFT_Y] * xp.float32(augment.shift))
    choice, amount = u[:, STROKE_CHOICE], u[:, STROKE_AMOUNT]
    stroke = xp.where(
        choice < THICKEN_P, amount * xp.float32(augment.thicken),
        xp.where(choice < THICKEN_P + THIN_P, -amount * xp.float32(augment.thin), xp.float32(0)),
    )
    return u[:, CLEAN] < augment.clean, inverse, shift, stroke


class Field(NamedTuple):
    """The elastic field as drawn, before its products: ``left @ noise[:, axis] @ right`` is the axis's field.

    ``noise`` (batch, 2, k, k) uniform in [-1, 1], ``left`` the basis B (28, k)
    and ``right`` alpha B^T (k, 28), both float32. A kernel that warps
    (``Augment.draws``) makes the products itself, per image, where they
    are small; ``smoothed`` makes them here, for the whole batch.
    """

    noise: object
    left: object
    right: object

    def smoothed(self, xp):
        """(dx, dy), each (batch, 28, 28)."""
        batch, _, k, _ = self.noise.shape
        half = xp.matmul(xp.asarray(self.left), self.noise)  # (batch, 2, 28, k)
        field = xp.matmul(half.reshape(batch * 2 * SIDE, k), xp.asarray(self.right))
        field = field.reshape(batch, 2, SIDE, SIDE)
        return field[:, 0], field[:, 1]


def field_draw(xp, seed, step, batch, sigma, alpha):
    """Step ``step``'s elastic field as drawn (a ``Field``): Simard's smoothed noise, in G's eigenbasis."""
    left, right = field_products(float(sigma), float(alpha))
    k = left.shape[1]
    noise = uniform_at_step(xp, seed, step, FIELD_LAYER, (batch, 2, k, k)) * 2 - 1
    return Field(noise, left, right)


@lru_cache(maxsize=32)
def field_products(sigma, alpha):
    """``Field``'s ``left`` and ``right`` for these settings: B and alpha B^T, float32, read-only."""
    basis = field_basis(sigma)
    right = np.ascontiguousarray(basis.T * np.float32(alpha))
    right.flags.writeable = False
    return basis, right


def elastic_field(xp, seed, step, batch, sigma, alpha):
    """(dx, dy), each (batch, 28, 28): ``field_draw``'s field, smoothed."""
    return field_draw(xp, seed, step, batch, sigma, alpha).smoothed(xp)


def sampling_coordinates(xp, inverse, shift, displacement=None):
    """(source x, source y), each (batch, 28, 28), of every output pixel."""
    p = xp.arange(SIDE, dtype=xp.float32) - xp.float32(CENTRE)
    px, py = p[None, None, :], p[None, :, None]
    a, b, c, d = (m[:, None, None] for m in inverse)
    src_x = a * px + b * py + xp.float32(CENTRE) - shift[0][:, None, None]
    src_y = c * px + d * py + xp.float32(CENTRE) - shift[1][:, None, None]
    if displacement is not None:
        src_x, src_y = src_x + displacement[0], src_y + displacement[1]
    return src_x, src_y


def bilinear_sample(xp, images, src_x, src_y):
    """``images`` (batch, h, w) read at (src_x, src_y) bilinearly, 0 outside; any number of points per image."""
    batch, h, w = images.shape
    # Zero padding, one pixel before and two after each axis, and coordinates
    # clipped to [-1, size]: a point beyond an edge then reads padding with
    # weight 1 (its far neighbour with weight 0), so it comes out exactly 0,
    # and no neighbour index needs a clip of its own.
    padded = xp.pad(images, ((0, 0), (1, 2), (1, 2))).reshape(-1)
    row = w + 3
    src_x, src_y = xp.clip(src_x, -1, w), xp.clip(src_y, -1, h)
    x0, y0 = xp.floor(src_x), xp.floor(src_y)
    fx, fy = src_x - x0, src_y - y0
    base = (xp.arange(batch, dtype=xp.int32) * ((h + 3) * row)).reshape((batch,) + (1,) * (src_x.ndim - 1))
    corner = base + (y0.astype(xp.int32) + 1) * row + (x0.astype(xp.int32) + 1)
    top = xp.take(padded, corner) * (1 - fx) + xp.take(padded, corner + 1) * fx
    bottom = xp.take(padded, corner + row) * (1 - fx) + xp.take(padded, corner + row + 1) * fx
    return top * (1 - fy) + bottom * fy


def stroke_width(xp, images, blend):
    """Each image blended toward its 4-neighbour dilation (``blend`` > 0) or erosion (< 0), by ``|blend|``."""
    padded = xp.pad(images, ((0, 0), (1, 1), (1, 1)))
    neighbours = (padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
    dilated, eroded = images, images
    for n in neighbours:
        dilated, eroded = xp.maximum(dilated, n), xp.minimum(eroded, n)
    t = blend[:, None, None]
    return images + xp.maximum(t, 0) * (dilated - images) + xp.maximum(-t, 0) * (eroded - images)


def draw(xp, seed, step, batch, augment):
    """(clean, inverse, shift, stroke, field): ``sample_parameters``' four and the elastic ``Field``, or None."""
    clean, inverse, shift, stroke = sample_parameters(xp, seed, step, batch, augment)
    field = field_draw(xp, seed, step, batch, augment.sigma, augment.alpha) if augment.kind == "elastic" else None
    return clean, inverse, shift, stroke, field


def warp(xp, x, draws):
    """``x`` (batch, 784) distorted as ``draws`` (``draw``'s five) say; clean rows unchanged."""
    clean, inverse, shift, stroke, field = draws
    batch = x.shape[0]
    # The stroke changes before the warp, on the gathered source: after it,
    # XLA fuses the neighbour reads into the bilinear gathers and repeats
    # them (4x slower on the CPU, measured).
    images = stroke_width(xp, x.reshape(batch, SIDE, SIDE), stroke)
    displacement = None if field is None else field.smoothed(xp)
    warped = xp.clip(bilinear_sample(xp, images, *sampling_coordinates(xp, inverse, shift, displacement)), 0, 1)
    return xp.where(clean[:, None], x, warped.reshape(batch, SIDE * SIDE).astype(x.dtype))


def augment_batch(xp, x, seed, step, augment):
    """The augmented batch: ``x`` (batch, 784) float32 in, same shape out; clean rows unchanged."""
    return warp(xp, x, draw(xp, seed, step, x.shape[0], augment))
