"""Model inputs from a frame and its trimap: only the contract's kinds, padded by reflection, cropped back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mattecli.inputs import FrameInputs, build_inputs, pad_reflect
from mattecli.media.frame import to_float
from mattecli.models import contract_for
from mattecli.preprocess import fba_trimap_encoding, two_channel_trimap

FBA = contract_for("fba-resnet18")
LSA = contract_for("lsa")  # image + one-channel trimap, size multiple 32
GFM = contract_for("gfm-tt")  # image only


def _frame(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((height, width, 3), dtype=np.float32)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=(height, width))
    return image, trimap


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    extra_h=st.integers(0, 40),
    extra_w=st.integers(0, 40),
    channels=st.sampled_from([None, 1, 3]),
)
def test_reflection_padding_keeps_the_frame_and_mirrors_without_repeating_the_edge(
    height: int, width: int, extra_h: int, extra_w: int, channels: int | None
) -> None:
    shape = (height, width) if channels is None else (height, width, channels)
    array = np.random.default_rng(height * 100 + width).random(shape, dtype=np.float32)
    padded = pad_reflect(array, height + extra_h, width + extra_w)
    assert padded.shape == (height + extra_h, width + extra_w, *shape[2:])
    np.testing.assert_array_equal(padded[:height, :width], array)
    if extra_h and height > 1:
        np.testing.assert_array_equal(padded[height, :width], array[height - 2])
    if extra_w and width > 1:
        np.testing.assert_array_equal(padded[:height, width], array[:, width - 2])


def test_fba_inputs_are_padded_to_the_multiple_and_crop_back_exactly() -> None:
    image, trimap = _frame(37, 53)
    inputs = build_inputs(FBA, image, trimap)
    assert set(inputs.arrays) == {"image", "trimap_2ch", "trimap_gauss6"}
    assert inputs.padded_shape == (40, 56)
    shapes = {kind: a.shape for kind, a in inputs.arrays.items()}
    assert shapes == {"image": (3, 40, 56), "trimap_2ch": (2, 40, 56), "trimap_gauss6": (6, 40, 56)}
    for array in inputs.arrays.values():
        assert array.dtype == np.float32 and array.flags.c_contiguous
    np.testing.assert_array_equal(inputs.crop(inputs.arrays["image"]).transpose(1, 2, 0), image)
    # The encodings describe the padded trimap the network sees.
    padded_trimap = pad_reflect(trimap, 40, 56)
    two = two_channel_trimap(padded_trimap)
    np.testing.assert_array_equal(inputs.arrays["trimap_2ch"], two.transpose(2, 0, 1))
    np.testing.assert_array_equal(inputs.arrays["trimap_gauss6"], fba_trimap_encoding(two).transpose(2, 0, 1))
    np.testing.assert_array_equal(inputs.unknown, padded_trimap == 128)
    np.testing.assert_array_equal(inputs.known_alpha[0], (padded_trimap == 255).astype(np.float32))


def test_one_channel_trimap_is_exactly_zero_half_one_and_only_asked_kinds_are_built() -> None:
    image, trimap = _frame(64, 96, seed=1)
    inputs = build_inputs(LSA, image, trimap)
    assert set(inputs.arrays) == {"image", "trimap_1ch"}
    one = inputs.arrays["trimap_1ch"]
    assert one.shape == (1, 64, 96)
    assert set(np.unique(one).tolist()) == {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(one[0][trimap == 0], 0.0)
    np.testing.assert_array_equal(one[0][trimap == 128], 0.5)
    np.testing.assert_array_equal(one[0][trimap == 255], 1.0)


def test_a_model_without_trimap_gets_the_image_only_and_every_pixel_is_unknown() -> None:
    image, _ = _frame(50, 70, seed=2)
    inputs = build_inputs(GFM, image, None)
    assert set(inputs.arrays) == {"image"}
    assert inputs.padded_shape == (64, 96)
    assert inputs.unknown.all() and not inputs.known_alpha.any()


def test_fill_values_are_the_trimap_alpha_and_the_image_colour() -> None:
    image, trimap = _frame(16, 24, seed=3)
    inputs = build_inputs(FBA, image, trimap)
    fill = inputs.fill(["alpha", "foreground", "background"])
    assert fill["alpha"].shape == (1, 16, 24)
    np.testing.assert_array_equal(fill["alpha"][0], (trimap == 255).astype(np.float32))
    np.testing.assert_array_equal(fill["foreground"].transpose(1, 2, 0), image)
    assert fill["background"] is fill["foreground"]


def test_out_of_range_values_are_clipped_and_mismatches_refused() -> None:
    image = np.full((8, 8, 3), 1.5, np.float32)
    image[0, 0] = -0.25
    inputs = build_inputs(GFM, image, None)
    assert inputs.arrays["image"].max() == 1.0 and inputs.arrays["image"].min() == 0.0
    with pytest.raises(ValueError, match="does not match"):
        build_inputs(FBA, np.zeros((8, 8, 3), np.float32), np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match="need a trimap"):
        build_inputs(FBA, np.zeros((8, 8, 3), np.float32), None)


@pytest.mark.parametrize("contract", [FBA, LSA, GFM], ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_inputs_of_any_rectangle_equal_the_whole_frame_inputs_cut_there(
    contract: object, dtype: type
) -> None:
    """Tiles read their inputs straight from the decoded frame, without a full-frame float copy."""
    rng = np.random.default_rng(5)
    _, trimap = _frame(61, 75, seed=5)
    if dtype is np.float32:
        decoded = rng.uniform(-0.2, 1.2, (61, 75, 3)).astype(np.float32)  # EXR: out of range too
    else:
        decoded = rng.integers(0, np.iinfo(dtype).max + 1, (61, 75, 3)).astype(dtype)
    needs_trimap = contract.needs_trimap
    whole = build_inputs(contract, to_float(decoded), trimap if needs_trimap else None)
    frame = FrameInputs(contract, decoded, trimap if needs_trimap else None)
    assert frame.kinds == list(whole.arrays) and frame.padded_shape == whole.padded_shape
    for y, x, h, w in [(0, 0, 16, 24), (8, 40, 32, 40), (48, 0, 16, 80), (0, 0, *whole.padded_shape)]:
        for kind, array in whole.arrays.items():
            out = frame.write(kind, y, x, np.full((array.shape[0], h, w), np.nan, np.float32))
            np.testing.assert_array_equal(out, array[:, y : y + h, x : x + w], err_msg=f"{kind} at {(y, x)}")
