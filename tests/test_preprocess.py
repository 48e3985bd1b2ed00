"""FBA input encodings: golden trimap encoding, hand-computed distances, empty regions, layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mattecli.preprocess import fba_inputs, fba_trimap_encoding, imagenet_normalise, two_channel_trimap


def chw(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 0, 1)


def test_golden_trimap_encoding(shared_reference: Path) -> None:
    golden = np.load(shared_reference / "fba_golden.npz")
    two_chan = golden["two_chan_trimap"][0].transpose(1, 2, 0)
    encoding = fba_trimap_encoding(two_chan)
    assert encoding.shape == (96, 128, 6) and encoding.dtype == np.float32
    expected = golden["trimap_transformed"][0]
    assert np.abs(chw(encoding) - expected).max() < 1e-5
    # The crop has both regions and an unknown band: every map is non-trivial.
    assert all(0.0 < m.mean() < 1.0 for m in expected)


def test_golden_imagenet_normalisation(shared_reference: Path) -> None:
    golden = np.load(shared_reference / "fba_golden.npz")
    normalised = imagenet_normalise(golden["image"][0].transpose(1, 2, 0))
    assert np.abs(chw(normalised) - golden["image_n"][0]).max() < 1e-6


def test_hand_computed_distances() -> None:
    trimap = np.full((9, 11), 128, np.uint8)
    trimap[4, 5] = 255  # one definite-foreground pixel
    trimap[:, 0] = 0  # a definite-background column
    encoding = fba_trimap_encoding(two_channel_trimap(trimap))
    sigmas = [0.02 * 320, 0.08 * 320, 0.16 * 320]
    for j, sigma in enumerate(sigmas):
        fg, bg = encoding[..., 3 + j], encoding[..., j]
        assert fg[4, 5] == 1.0 and bg[2, 0] == 1.0
        np.testing.assert_allclose(fg[4, 8], np.exp(-9 / (2 * sigma**2)), rtol=1e-6)  # d = 3
        np.testing.assert_allclose(fg[1, 9], np.exp(-25 / (2 * sigma**2)), rtol=1e-5)  # d = 5 (3-4-5)
        np.testing.assert_allclose(bg[7, 10], np.exp(-100 / (2 * sigma**2)), rtol=1e-5)  # d = 10
    assert encoding[4, 8, 3] < encoding[4, 8, 4] < encoding[4, 8, 5]  # wider scales decay slower


def test_missing_region_gives_zero_maps() -> None:
    """No definite background: its distance is infinite everywhere, so its maps are 0 (as the reference)."""
    trimap = np.full((6, 8), 128, np.uint8)
    trimap[:, 6:] = 255
    encoding = fba_trimap_encoding(two_channel_trimap(trimap))
    assert not encoding[..., :3].any()
    assert encoding[..., 3:].min() > 0.0 and encoding[0, 7, 3] == 1.0
    all_unknown = fba_trimap_encoding(two_channel_trimap(np.full((4, 4), 128, np.uint8)))
    assert not all_unknown.any()


@pytest.mark.parametrize(
    ("dtype", "unknown", "full"), [(np.uint8, 128, 255), (np.uint16, 32768, 65535), (np.float32, 0.5, 1.0)]
)
def test_two_channel_trimap_dtypes(dtype: type, unknown: float, full: float) -> None:
    trimap = np.array([[0, unknown, full]], dtype=dtype)
    two_chan = two_channel_trimap(trimap)
    assert two_chan.dtype == np.float32
    np.testing.assert_array_equal(two_chan[..., 0], [[1, 0, 0]])
    np.testing.assert_array_equal(two_chan[..., 1], [[0, 0, 1]])


def test_two_channel_trimap_rejects_colour() -> None:
    with pytest.raises(ValueError, match="single-channel"):
        two_channel_trimap(np.zeros((4, 4, 3), np.uint8))


def test_fba_inputs_layout() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.random((10, 12, 3), dtype=np.float32)
    trimap = np.full((10, 12), 128, np.uint8)
    trimap[:3] = 0
    trimap[-3:] = 255
    inputs = fba_inputs(rgb, trimap)
    assert list(inputs) == ["image", "two_chan_trimap", "trimap_transformed"]
    assert [v.shape for v in inputs.values()] == [(1, 3, 10, 12), (1, 2, 10, 12), (1, 6, 10, 12)]
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in inputs.values())
    np.testing.assert_array_equal(inputs["image"][0], chw(rgb))
    np.testing.assert_array_equal(
        inputs["trimap_transformed"][0], chw(fba_trimap_encoding(two_channel_trimap(trimap)))
    )
