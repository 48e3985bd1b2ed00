"""Inputs of a band model: one coarse view of the whole frame, and full-resolution patches of the band.

A band model (``architecture = "band"``) computes global context once per frame, on the frame
shrunk by :data:`SCALE`, and does full-resolution work only on square *cells* of the frame that hold
unknown trimap pixels. Its ONNX graph takes three inputs, all built here (NumPy/OpenCV, no torch),
so training and ``mattecli run`` build them with the same code:

* ``band_coarse`` (1 × 11 × H/4 × W/4 float32): the padded frame shrunk 4× by area averaging (RGB in
  [0, 1]), the fractions of definite foreground and background in each coarse pixel, and FBA's six
  Gaussian distance maps of the coarse trimap (distances in full-resolution pixels).
* ``band_patches`` (P × 5 × C' × C' float32, C' = CELL + 2·MARGIN): for each cell, its pixels and a
  MARGIN of context on every side (RGB in [0, 1], definite foreground, definite background). Pixels
  beyond the padded frame repeat its edge.
* ``band_index`` (P × A² int64): for each cell, the flat indices (row · w + column) into the coarse
  map of the A × A coarse pixels whose bilinear interpolation covers the cell's window, clamped to the
  map. With :func:`interpolation_matrix` the graph upsamples the coarse features of that window
  exactly as a whole-frame bilinear upsampling (half-pixel centres, edges clamped) would.

Because every cell sees the same values a whole-frame pass would give it (the coarse features and the
refiner's receptive field, MARGIN, both fit in the window), band inference equals whole-frame
inference by construction: computing all cells reproduces the whole frame, and computing only the
band's cells changes nothing inside the band.

Frames are padded (reflecting their border) to a multiple of :data:`SIZE_MULTIPLE`: the coarse
encoder's stride (32) times :data:`SCALE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mattecli.preprocess import FBA_ENCODING_SCALES, Scratch, gaussian_maps, region_distance

SCALE = 4  # full-resolution pixels per coarse pixel, each way
CELL = 16  # side of the square a patch computes (a multiple of SCALE)
MARGIN = 3  # context on each side of a cell: the refiner's receptive radius (three 3×3 convolutions)
COARSE_STRIDE = 32  # the coarse encoder's output stride
SIZE_MULTIPLE = SCALE * COARSE_STRIDE
COARSE_CHANNELS = 3 + 2 + 2 * len(FBA_ENCODING_SCALES)
PATCH_CHANNELS = 5
# Coarse values at or above this are "all of the coarse pixel's 16 pixels" (area averages of 1.0).
_WHOLE = 1.0 - 1e-6


@dataclass(frozen=True)
class BandGeometry:
    """Cell size, context margin and coarse scale: fixed per exported model (the graph bakes them in)."""

    scale: int = SCALE
    cell: int = CELL
    margin: int = MARGIN

    @property
    def window(self) -> int:
        """Side of a patch: the cell and its margin on both sides."""
        return self.cell + 2 * self.margin

    def _offsets(self) -> np.ndarray:
        """Coarse source coordinate of each window pixel, relative to the cell's coarse origin."""
        pixel = np.arange(self.window, dtype=np.float64) - self.margin
        return (pixel + 0.5) / self.scale - 0.5

    @property
    def coarse_first(self) -> int:
        """First coarse row (relative to the cell's coarse origin) that the window interpolates from."""
        return math.floor(self._offsets()[0])

    @property
    def coarse_span(self) -> int:
        """A: how many coarse rows (and columns) the window interpolates from."""
        return math.floor(self._offsets()[-1]) + 2 - self.coarse_first


DEFAULT_GEOMETRY = BandGeometry()


def _unit_range(rgb: np.ndarray) -> np.ndarray:
    """Float pixels clipped to [0, 1], the range the network was trained on (an EXR plate may exceed it).

    Integer pixels pass unchanged: they are scaled by their dtype's maximum where they are used.
    """
    if np.issubdtype(rgb.dtype, np.integer):
        return rgb
    return np.clip(rgb, 0.0, 1.0)


def interpolation_matrix(geometry: BandGeometry = DEFAULT_GEOMETRY) -> np.ndarray:
    """window × A float32 matrix R: the window's upsampled rows are R @ (the A gathered coarse rows).

    Half-pixel bilinear weights, exactly as ``F.interpolate(..., mode="bilinear",
    align_corners=False)``: a window row maps to coarse coordinate t = (y + 0.5) / scale − 0.5 and
    mixes rows floor(t) and floor(t) + 1. Near the map's edges the gathered rows repeat the edge row
    (indices clamped), which gives the same value as the clamping of the whole-frame upsampling, so
    one constant matrix serves every cell.
    """
    t = geometry._offsets()
    first = geometry.coarse_first
    matrix = np.zeros((geometry.window, geometry.coarse_span), dtype=np.float64)
    for row, coord in enumerate(t):
        k0 = math.floor(coord)
        frac = coord - k0
        matrix[row, k0 - first] += 1.0 - frac
        matrix[row, k0 + 1 - first] += frac
    return matrix.astype(np.float32)


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The frame size after padding to :data:`SIZE_MULTIPLE`."""
    return -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE, -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE


def coarse_input(
    rgb: np.ndarray, trimap: np.ndarray, geometry: BandGeometry = DEFAULT_GEOMETRY
) -> np.ndarray:
    """The 1 × 11 × H/s × W/s coarse input of a padded frame (H, W multiples of the size multiple).

    ``rgb`` is H×W×3 in [0, 1] (float) or integer (scaled by its dtype's maximum); ``trimap`` is H×W
    uint8 with 0 / 128 / 255. Shrinking is OpenCV's area averaging, exact for an integer factor.
    """
    height, width = trimap.shape
    s = geometry.scale
    if height % s or width % s:
        raise ValueError(f"frame {height}x{width} is not a multiple of the coarse scale {s}")
    size = (width // s, height // s)
    small = cv2.resize(_unit_range(rgb), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    if np.issubdtype(rgb.dtype, np.integer):
        small *= np.float32(1.0 / np.iinfo(rgb.dtype).max)
    fg = cv2.resize((trimap == 255).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    bg = cv2.resize((trimap == 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    out = np.empty((1, COARSE_CHANNELS, size[1], size[0]), dtype=np.float32)
    out[0, 0:3] = small.transpose(2, 0, 1)
    out[0, 3] = fg
    out[0, 4] = bg
    scratch = Scratch()
    n = len(FBA_ENCODING_SCALES)
    for k, fraction in enumerate((bg, fg)):  # FBA's order: background maps, then foreground maps
        dist = region_distance(fraction >= _WHOLE, scratch, "distance")
        if dist is not None:
            dist *= np.float32(s)  # coarse pixels -> full-resolution pixels, FBA's unit
        gaussian_maps(dist, out[0, 5 + n * k : 5 + n * (k + 1)])
    return out


def frame_pixels(rgb: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """5 × H × W float32: the whole frame as a patch would hold it (RGB in [0, 1], definite fg, bg).

    The whole-frame computation (training, eager benchmarks) takes this; cells take their windows
    of it from :func:`patch_input`.
    """
    out = np.empty((PATCH_CHANNELS, *trimap.shape), dtype=np.float32)
    out[0:3] = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)
    out[3] = trimap == 255
    out[4] = trimap == 0
    return out


def band_cells(trimap: np.ndarray, height: int, width: int, cell: int = CELL) -> np.ndarray:
    """K × 2 int64 (row, column) of the cells holding an unknown pixel of the frame's top-left height×width.

    ``trimap`` is the padded frame's (uint8 0 / 128 / 255); padding is never a reason to compute a cell.
    """
    rows, cols = -(-height // cell), -(-width // cell)
    region = trimap[: rows * cell, : cols * cell]
    unknown = (region != 0) & (region != 255)
    unknown[height:] = False
    unknown[:, width:] = False
    grid = unknown.reshape(rows, cell, cols, cell).any(axis=(1, 3))
    return np.argwhere(grid).astype(np.int64)


def all_cells(height: int, width: int, cell: int = CELL) -> np.ndarray:
    """Every cell of a height×width frame: the whole-frame computation, for comparisons."""
    rows, cols = np.meshgrid(np.arange(-(-height // cell)), np.arange(-(-width // cell)), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.int64)


def _window_indices(cells: np.ndarray, axis: int, size: int, geometry: BandGeometry) -> np.ndarray:
    """P × window pixel rows (axis 0) or columns (axis 1) of each cell's window, clamped to size."""
    start = cells[:, axis] * geometry.cell - geometry.margin
    return np.clip(start[:, None] + np.arange(geometry.window), 0, size - 1)


def patch_input(
    rgb: np.ndarray, trimap: np.ndarray, cells: np.ndarray, geometry: BandGeometry = DEFAULT_GEOMETRY
) -> np.ndarray:
    """P × 5 × window × window float32 patches of a padded frame (see the module docstring)."""
    height, width = trimap.shape
    rows = _window_indices(cells, 0, height, geometry)[:, :, None]
    cols = _window_indices(cells, 1, width, geometry)[:, None, :]
    out = np.empty((len(cells), PATCH_CHANNELS, geometry.window, geometry.window), dtype=np.float32)
    pixels = _unit_range(rgb[rows, cols])  # P × window × window × 3
    scale = np.float32(1.0 / np.iinfo(rgb.dtype).max) if np.issubdtype(rgb.dtype, np.integer) else 1.0
    np.multiply(pixels.transpose(0, 3, 1, 2), np.float32(scale), out=out[:, 0:3], casting="unsafe")
    tri = trimap[rows, cols]
    out[:, 3] = tri == 255
    out[:, 4] = tri == 0
    return out


def patch_index(
    cells: np.ndarray, coarse_height: int, coarse_width: int, geometry: BandGeometry = DEFAULT_GEOMETRY
) -> np.ndarray:
    """P × A² int64 flat indices into the coarse map of each cell's A × A interpolation window."""
    per_cell = geometry.cell // geometry.scale
    span = np.arange(geometry.coarse_span) + geometry.coarse_first
    rows = np.clip(cells[:, 0:1] * per_cell + span, 0, coarse_height - 1)
    cols = np.clip(cells[:, 1:2] * per_cell + span, 0, coarse_width - 1)
    flat = rows[:, :, None] * coarse_width + cols[:, None, :]
    return flat.reshape(len(cells), -1).astype(np.int64)
