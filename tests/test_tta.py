"""Test-time augmentation: transforms undo exactly, views are counted, outputs are averaged correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_nets import conv_onnx

from engines.base import open_engine
from mattecli.frame_matter import FrameMatter
from mattecli.models import ModelContract
from mattecli.run_options import TileOptions
from mattecli.summary import StageClock
from mattecli.tta import DIHEDRAL, FULL_SCALES, Dihedral, predict_tta, scaled_size, views

CONTRACT = ModelContract(
    name="conv-test",
    architecture="gfm",
    paper="test network: three 3x3 convolutions",
    inputs=(("image", "image"),),
    outputs=(("alpha", "alpha"),),
    size_multiple=8,
    needs_trimap=False,
)


def _conv_onnx(path: Path, *, symmetric: bool) -> Path:
    """With ``symmetric``, every kernel is invariant under the 8 symmetries of the square, so the
    network commutes with rotations and mirrors."""

    def symmetrise(w: np.ndarray) -> np.ndarray:
        return np.mean([t.apply(w, axes=(2, 3)) for t in DIHEDRAL], axis=0)

    return conv_onnx(
        path, CONTRACT, seed=5, widths=(3, 6, 6, 1), scale=0.5, kernel=symmetrise if symmetric else None
    )


def _matter(path: Path) -> FrameMatter:
    engine = open_engine("ort", path, "cpu", threads=1)
    return FrameMatter(
        engine,
        tiles=TileOptions(size=None),
        tta="none",
        fusion=False,
        want_foreground=False,
        clock=StageClock(),
    )


def test_the_eight_transforms_are_distinct_and_undo_exactly() -> None:
    image = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    seen = set()
    for t in DIHEDRAL:
        moved = t.apply(image)
        assert moved.shape == ((7, 5, 3) if t.turns % 2 else (5, 7, 3))
        np.testing.assert_array_equal(t.invert(moved), image)
        chw = np.ascontiguousarray(moved.transpose(2, 0, 1))
        np.testing.assert_array_equal(t.invert(chw, axes=(1, 2)).transpose(1, 2, 0), image)
        seen.add(moved.tobytes() + bytes(moved.shape))
    assert len(seen) == 8
    np.testing.assert_array_equal(Dihedral(0, True).apply(image), image[:, ::-1])


def test_views_and_scaled_sizes() -> None:
    assert views("none") == [(1.0, Dihedral())]
    assert views("flip") == [(1.0, Dihedral()), (1.0, Dihedral(0, True))]
    full = views("full")
    assert len(full) == 24 and len(set(full)) == 24
    assert {s for s, _ in full} == set(FULL_SCALES)
    assert scaled_size(100, 150, 1.0, 8) == (100, 150)  # the plain pass keeps the frame's size
    assert scaled_size(100, 150, 0.8, 8) == (80, 120)
    assert scaled_size(100, 150, 1.25, 8) == (128, 184)
    assert scaled_size(10, 10, 0.8, 32) == (32, 32)
    with pytest.raises(ValueError, match="unknown TTA mode"):
        views("rotate")  # type: ignore[arg-type]


def test_a_pointwise_predictor_is_unchanged_by_flip_and_full_runs_24_passes_with_its_trimaps() -> None:
    height, width = 40, 56
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    trimap = np.where(xx < 20, 0, np.where(xx > 35, 255, 128)).astype(np.uint8)
    image = np.stack([trimap / np.float32(255), (yy / height), np.full_like(yy, 0.3)], axis=-1)
    calls: list[tuple[int, int]] = []

    def predict(view: np.ndarray, view_trimap: np.ndarray | None) -> dict[str, np.ndarray]:
        assert view_trimap is not None and view_trimap.shape == view.shape[:2]
        assert set(np.unique(view_trimap).tolist()) <= {0, 128, 255}  # nearest-neighbour only
        # The trimap travels with the image through every transform.
        np.testing.assert_array_equal(view_trimap == 255, view[:, :, 0] > 0.99)
        calls.append(view.shape[:2])
        return {"alpha": view[:, :, 1][None].copy(), "foreground": view.transpose(2, 0, 1).copy()}

    plain = predict(image, trimap)
    calls.clear()
    flipped = predict_tta(predict, image, trimap, "flip", 8)
    assert len(calls) == 2
    for kind in plain:
        np.testing.assert_allclose(flipped[kind], plain[kind], atol=1e-6)

    calls.clear()
    full = predict_tta(predict, image, trimap, "full", 8)
    assert len(calls) == 24
    assert set(calls) == {(40, 56), (56, 40), (32, 48), (48, 32), (48, 72), (72, 48)}
    assert full["alpha"].shape == (1, height, width) and full["foreground"].shape == (3, height, width)
    # A linear ramp survives bilinear resizing up to the sampling offsets at its ends.
    np.testing.assert_allclose(full["alpha"][:, 2:-2], plain["alpha"][:, 2:-2], atol=0.02)


def test_tta_of_an_equivariant_network_equals_its_plain_output(tmp_path: Path) -> None:
    matter = _matter(_conv_onnx(tmp_path / "sym.onnx", symmetric=True))
    image = np.random.default_rng(2).random((48, 64, 3), dtype=np.float32)  # multiples of 8: no padding
    plain = matter.predict(image, None)["alpha"]
    for t in DIHEDRAL:
        np.testing.assert_allclose(
            t.invert(matter.predict(t.apply(image), None)["alpha"], axes=(1, 2)), plain, atol=1e-5
        )
    np.testing.assert_allclose(predict_tta(matter.predict, image, None, "flip", 8)["alpha"], plain, atol=1e-5)


def test_flip_tta_averages_the_mirrored_pass_of_a_real_network(tmp_path: Path) -> None:
    matter = _matter(_conv_onnx(tmp_path / "plain.onnx", symmetric=False))
    image = np.random.default_rng(3).random((40, 48, 3), dtype=np.float32)
    plain = matter.predict(image, None)["alpha"]
    mirrored = matter.predict(np.ascontiguousarray(image[:, ::-1]), None)["alpha"][:, :, ::-1]
    assert np.abs(plain - mirrored).max() > 1e-3  # the network is not symmetric
    averaged = predict_tta(matter.predict, image, None, "flip", 8)["alpha"]
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-6)
