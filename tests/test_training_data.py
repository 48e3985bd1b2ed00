"""Training data: trimap generators, glance targets, crops, recipes, determinism, datasets and splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mattecli.errors import InputError
from mattecli.media.imageio import read_image, write_image
from training.data import (
    BackgroundSet,
    ForegroundDataset,
    ImageAlphaDataset,
    MattingItem,
    TrainingSamples,
    adamatting_recipe,
    alphagan_recipe,
    fba_recipe,
    gfm_rssn_recipe,
    lsa_recipe,
    make_sample,
    make_scene,
    split_names,
)
from training.data.augment import crop_window, unknown_pixel
from training.data.composite import composite
from training.data.trimaps import (
    alphagan_trimap,
    dim_trimap,
    fba_trimap,
    glance_targets,
    lsa_trimap,
)
from training.networks.gfm import GLANCE_CLASSES

NAMES = [f"GT{n:02d}" for n in (1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 14, 16, 17, 18, 20, 21, 22, 23, 24, 26, 27)]
EDGE = 150  # first column with alpha > 0 in the straight-edge alpha
RAMP = 10  # soft columns


def _straight_edge(height: int = 12, width: int = 400) -> np.ndarray:
    """Alpha 0 left of column EDGE, a 10-column ramp, then 1: band widths are column counts."""
    alpha = np.zeros((height, width), np.float32)
    alpha[:, EDGE : EDGE + RAMP] = np.linspace(0.05, 0.95, RAMP, dtype=np.float32)
    alpha[:, EDGE + RAMP :] = 1.0
    return alpha


def _band_widths(trimap: np.ndarray, alpha: np.ndarray) -> tuple[int, int]:
    """(outward, inward): unknown columns over alpha = 0 and over alpha = 1, checked equal on every row."""
    unknown = trimap == 128
    outward = {int(n) for n in (unknown & (alpha == 0)).sum(axis=1)}
    inward = {int(n) for n in (unknown & (alpha == 1)).sum(axis=1)}
    assert len(outward) == 1 and len(inward) == 1
    assert np.all(unknown[alpha * (1 - alpha) > 0])  # every soft pixel is unknown
    assert np.all(trimap[:, :EDGE][~unknown[:, :EDGE]] == 0) and np.all(
        trimap[:, EDGE:][~unknown[:, EDGE:]] == 255
    )
    return outward.pop(), inward.pop()


@pytest.mark.parametrize(
    ("maker", "low", "high", "symmetric"),
    [
        (fba_trimap, 3, 25, False),
        (alphagan_trimap, 2, 20, True),
        (lsa_trimap, 3, 25, False),
        (dim_trimap, 1, 20, False),
    ],
)
def test_trimap_band_widths_stay_in_the_paper_ranges(maker, low: int, high: int, symmetric: bool) -> None:
    alpha = _straight_edge()
    widths = [_band_widths(maker(alpha, np.random.default_rng(seed)), alpha) for seed in range(80)]
    outward, inward = zip(*widths, strict=True)
    for side in (outward, inward):
        assert low <= min(side) and max(side) <= high
        assert min(side) <= low + 2 and max(side) >= high - 2  # the whole range is used
    if symmetric:
        assert outward == inward
    else:
        assert any(o != i for o, i in widths)


def test_trimaps_hold_exact_levels_on_real_alpha(shared_data: Path) -> None:
    alpha = read_image(shared_data / "alphamatting" / "alpha" / "GT04.png")[:, :, 0].astype(np.float32) / 255
    for maker in (fba_trimap, alphagan_trimap, lsa_trimap, dim_trimap):
        trimap = maker(alpha, np.random.default_rng(0))
        assert trimap.dtype == np.uint8 and set(np.unique(trimap)) == {0, 128, 255}
        assert np.all(alpha[trimap == 0] == 0) and np.all(alpha[trimap == 255] == 1)


def test_glance_targets_follow_the_network_classes() -> None:
    alpha = _straight_edge(width=500)
    soft = (alpha > 0) & (alpha < 1)
    for rosta in ("TT", "FT", "BT"):
        targets = glance_targets(alpha, rosta)
        glance, transition, focus = targets["glance"], targets["transition"], targets["focus"]
        assert set(np.unique(glance)) == set(range(len(GLANCE_CLASSES[rosta])))
        assert glance.dtype == np.uint8 and transition.dtype == np.uint8 and focus.dtype == np.float32
        assert np.all(transition[soft] == 1)
    tt = glance_targets(alpha, "TT")
    assert _band_widths(np.array([0, 128, 255], np.uint8)[tt["glance"]], alpha) == (12, 12)
    assert np.all(alpha[tt["glance"] == 2] == 1) and np.all(alpha[tt["glance"] == 0] == 0)
    np.testing.assert_array_equal(tt["focus"], alpha)
    ft = glance_targets(alpha, "FT")
    assert np.all(alpha[ft["glance"] == 1] == 1)  # GD's foreground is truly opaque
    eroded = int(((ft["glance"] == 0) & (alpha == 1)).sum(axis=1)[0])
    assert eroded in (24, 25)  # a 50-px ellipse reaches 25 px one way, 24 the other
    np.testing.assert_array_equal(ft["transition"], ((alpha > 0) & (ft["glance"] == 0)).astype(np.uint8))
    bt = glance_targets(alpha, "BT")
    assert np.all(alpha[bt["glance"] == 0] == 0)
    grown = int(((bt["glance"] == 1) & (alpha == 0)).sum(axis=1)[0])
    assert grown in (24, 25)
    np.testing.assert_allclose(bt["focus"], 1 - alpha)  # FD learns transparency: alpha = GD - FD
    rebuilt = np.clip(bt["glance"] - bt["focus"], 0, 1)  # CM's merge rule with perfect outputs
    np.testing.assert_allclose(rebuilt, alpha, atol=1e-6)
    rebuilt = np.clip(ft["glance"] + ft["focus"] * (ft["glance"] == 0), 0, 1)
    np.testing.assert_allclose(rebuilt, alpha, atol=1e-6)


def test_crops_are_centred_on_unknown_pixels() -> None:
    alpha = np.zeros((900, 1000), np.float32)
    cv2.circle(alpha, (500, 450), 150, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 4)
    trimap = fba_trimap(alpha, np.random.default_rng(0))
    for seed in range(40):
        rng = np.random.default_rng(seed)
        centre = unknown_pixel(trimap, rng)
        assert centre is not None and trimap[centre] == 128
        for size in (320, 480, 640):
            top, left = crop_window(trimap.shape, size, rng, centre)
            assert 0 <= top <= 900 - size and 0 <= left <= 1000 - size
            if 320 <= centre[0] <= 900 - 320 and 320 <= centre[1] <= 1000 - 320:
                assert (top + size // 2, left + size // 2) == centre
            else:  # moved inside the frame only as far as needed: the pixel stays in the window
                assert top <= centre[0] < top + size and left <= centre[1] < left + size
    assert unknown_pixel(np.zeros((5, 5), np.uint8), np.random.default_rng(0)) is None


@pytest.fixture(scope="module")
def items(shared_data: Path) -> list[MattingItem]:
    """Three real alphamatting triplets at half size, the photo standing in for F (fast, in memory)."""
    root = shared_data / "alphamatting"
    dataset = ForegroundDataset(root / "image", root / "alpha", names=["GT01", "GT04", "GT26"])
    out = []
    for item in (dataset[i] for i in range(len(dataset))):
        half = (item.alpha.shape[1] // 2, item.alpha.shape[0] // 2)
        fg = cv2.resize(item.fg, half, interpolation=cv2.INTER_AREA)
        out.append(MattingItem(item.name, fg, cv2.resize(item.alpha, half, interpolation=cv2.INTER_AREA)))
    return out


@pytest.fixture(scope="module")
def backgrounds(shared_data: Path) -> BackgroundSet:
    return BackgroundSet(shared_data / "backgrounds")


def test_recipes_give_the_sizes_and_keys_the_networks_take(items, backgrounds: BackgroundSet) -> None:
    cases = [
        (fba_recipe(), {"trimap"}, None),
        (alphagan_recipe(), {"trimap"}, 320),
        (lsa_recipe(alphamatting=True), {"trimap"}, 320),
        (adamatting_recipe(), {"trimap", "trimap_target"}, 320),
        (gfm_rssn_recipe("BT", denoise_p=0.0), {"glance", "transition", "focus"}, 320),
    ]
    for recipe, extra, size in cases:
        samples = TrainingSamples(items, backgrounds, recipe, seed=3)
        for position in range(2):
            sample = samples.sample(position)
            assert set(sample) == {"image", "fg", "bg", "alpha"} | extra, recipe.name
            assert all(array.flags.writeable and array.flags.c_contiguous for array in sample.values())
            height, width = sample["alpha"].shape
            assert height == width and (height == size if size else height in (320, 480, 640, 960, 1280))
            for key in ("image", "fg", "bg"):
                assert sample[key].shape == (height, width, 3) and sample[key].dtype == np.float32
                assert sample[key].min() >= 0.0 and sample[key].max() <= 1.0
            if "trimap" in sample:
                assert sample["trimap"].dtype == np.uint8 and set(np.unique(sample["trimap"])) <= {
                    0,
                    128,
                    255,
                }
                assert np.any(sample["trimap"] == 128)
            if "trimap_target" in sample:
                assert set(np.unique(sample["trimap_target"])) <= {0, 1, 2}
    gfm = TrainingSamples(items, backgrounds, gfm_rssn_recipe("TT"), seed=0)
    assert len(gfm) == 5 * len(items)  # K = 5 backgrounds per foreground per epoch
    assert len(TrainingSamples(items, backgrounds, fba_recipe(), seed=0)) == 2 * len(items)


def test_fba_crops_are_centred_on_the_unknown_band(items, backgrounds: BackgroundSet) -> None:
    samples = TrainingSamples(items, backgrounds, fba_recipe(photometric=False), seed=0)
    centred = 0
    for position in range(len(samples)):
        sample = samples.sample(position)
        size = sample["alpha"].shape[0]
        assert size in (320, 480, 640)
        band = sample["trimap"][size // 2 - 1 : size // 2 + 1, size // 2 - 1 : size // 2 + 1]
        centred += bool(np.any(band == 128))
    assert centred >= len(samples) - 2  # only crops pushed back inside the frame may miss the centre


def test_composite_invariant_holds_exactly_without_noise(items, backgrounds: BackgroundSet) -> None:
    for recipe in (
        fba_recipe(),
        alphagan_recipe(),
        lsa_recipe(),
        gfm_rssn_recipe(noise_p=0.0, denoise_p=0.0),
    ):
        sample = TrainingSamples(items, backgrounds, recipe, seed=1).sample(0)
        np.testing.assert_array_equal(sample["image"], composite(sample["fg"], sample["alpha"], sample["bg"]))
    noisy = TrainingSamples(items, backgrounds, gfm_rssn_recipe(noise_p=1.0, denoise_p=0.0), seed=1).sample(0)
    residual = noisy["image"] - composite(noisy["fg"], noisy["alpha"], noisy["bg"])
    assert np.std(residual) == pytest.approx(10 / 255, rel=0.1)


def test_same_seed_same_samples_other_seed_other_samples(items, backgrounds: BackgroundSet) -> None:
    for recipe in (fba_recipe(), gfm_rssn_recipe(denoise_p=0.0), alphagan_recipe()):
        first = TrainingSamples(items, backgrounds, recipe, seed=4)
        again = TrainingSamples(items, backgrounds, recipe, seed=4)
        for position in (1, 0):  # any order: each sample depends only on (seed, epoch, position)
            a, b = first.sample(position, epoch=2), again.sample(position, epoch=2)
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        other_seed = TrainingSamples(items, backgrounds, recipe, seed=5).sample(0, epoch=2)
        other_epoch = first.sample(0, epoch=3)
        for other in (other_seed, other_epoch):
            base = first.sample(0, epoch=2)
            assert other["image"].shape != base["image"].shape or not np.array_equal(
                other["image"], base["image"]
            )


def test_every_second_fba_sample_is_the_previous_scene_at_twice_the_size(items, backgrounds) -> None:
    recipe = fba_recipe()
    one = make_scene(recipe, items, 1, backgrounds, np.random.default_rng([9, 0, 0, 0]))
    two = make_scene(recipe, items, 1, backgrounds, np.random.default_rng([9, 0, 0, 0]), scale=2.0)
    assert two["alpha"].shape == (2 * one["alpha"].shape[0], 2 * one["alpha"].shape[1])
    other = make_scene(recipe, items, 1, backgrounds, np.random.default_rng([10, 0, 0, 0]))
    for key in ("fg", "alpha", "bg"):
        half = cv2.resize(two[key], one[key].shape[1::-1], interpolation=cv2.INTER_AREA)
        # Equal up to resampling (sub-pixel placement of the background window): measured 0.012 at most.
        assert np.abs(half - one[key]).mean() < 0.02, key
    assert np.abs(other["bg"] - one["bg"]).mean() > 0.05  # another scene is far more different
    # TrainingSamples pairs positions 2k and 2k+1 this way: the odd one is built at 2x.
    samples = TrainingSamples(items, backgrounds, recipe, seed=9)
    crop = samples.sample(1)
    assert crop["alpha"].shape[0] in (320, 480, 640)


def test_make_sample_draws_only_from_the_generator_it_is_given(items, backgrounds: BackgroundSet) -> None:
    recipe = alphagan_recipe()
    scene = make_scene(recipe, items, 0, backgrounds, np.random.default_rng(1))
    np.random.seed(0)
    a = make_sample(recipe, scene, np.random.default_rng(2))
    assert set(scene) == {"fg", "alpha", "bg"}  # the scene is not modified
    np.random.seed(1)
    b = make_sample(recipe, scene, np.random.default_rng(2))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_split_names_is_deterministic_and_disjoint() -> None:
    train, held = split_names(NAMES, holdout=5, seed=0)
    assert len(held) == 5 and len(train) == 16
    assert sorted(train + held) == sorted(NAMES) and not set(train) & set(held)
    assert split_names(list(reversed(NAMES)), holdout=5, seed=0) == (train, held)  # order-independent
    assert split_names(NAMES, holdout=5, seed=1)[1] != held
    assert split_names(NAMES, holdout=["GT27", "GT01"]) == (
        [n for n in NAMES if n not in ("GT01", "GT27")],
        ["GT01", "GT27"],
    )
    with pytest.raises(InputError, match="GT99"):
        split_names(NAMES, holdout=["GT99"])
    with pytest.raises(InputError):
        split_names(NAMES, holdout=21)


def test_datasets_pair_by_name_and_refuse_bad_inputs(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "alphamatting"
    dataset = ForegroundDataset(root / "image", root / "alpha", shared_data / "alphamatting" / "trimap")
    assert dataset.names == NAMES and len(dataset) == 21
    item = dataset[0]
    assert item.name == "GT01" and item.fg.shape == (497, 800, 3) and item.alpha.shape == (497, 800)
    assert item.bg is not None and item.fg.dtype == np.float32 and item.alpha.max() == 1.0
    train, _ = split_names(NAMES, holdout=5)
    assert ForegroundDataset(root / "image", root / "alpha", names=train).names == train
    # A missing alpha is reported by name before anything is read.
    images, alphas = tmp_path / "image", tmp_path / "alpha"
    for name in ("GT01", "GT02"):
        write_image(images / f"{name}.png", read_image(root / "image" / f"{name}.png"))
    write_image(alphas / "GT01.png", read_image(root / "alpha" / "GT01.png")[:, :, 0])
    with pytest.raises(InputError, match="GT02"):
        ForegroundDataset(images, alphas)
    # An alpha of the wrong size names the file.
    write_image(alphas / "GT02.png", read_image(root / "alpha" / "GT02.png")[:100, :100, 0])
    with pytest.raises(InputError, match="GT02.png") as info:
        ForegroundDataset(images, alphas)[1]
    assert "100x100" in str(info.value)


def test_image_alpha_dataset_caches_the_reestimated_foreground(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "alphamatting"
    images, alphas, cache = tmp_path / "image", tmp_path / "alpha", tmp_path / "cache"
    for name in ("GT04", "GT05"):
        image = read_image(root / "image" / f"{name}.png")
        size = (200, round(image.shape[0] * 200 / image.shape[1]))
        write_image(images / f"{name}.png", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        alpha = read_image(root / "alpha" / f"{name}.png")[:, :, 0]
        write_image(alphas / f"{name}.png", cv2.resize(alpha, size, interpolation=cv2.INTER_AREA))
    cached = ImageAlphaDataset(images, alphas, "ml", cache)
    first = cached[1]
    entries = sorted(cache.iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("GT05.ml.") and entries[0].suffix == ".png"
    assert read_image(entries[0]).dtype == np.uint16
    stamp = entries[0].stat().st_mtime_ns
    again = cached[1]
    assert entries[0].stat().st_mtime_ns == stamp  # read back, not recomputed
    np.testing.assert_array_equal(first.fg, again.fg)
    np.testing.assert_array_equal(
        first.fg, ImageAlphaDataset(images, alphas, "ml")[1].fg
    )  # same bits uncached
    assert first.bg is None and first.fg.shape == (first.alpha.shape[0], 200, 3)
    # A changed source file gets a new entry instead of a stale one.
    alpha = read_image(alphas / "GT05.png")
    write_image(alphas / "GT05.png", np.ascontiguousarray(alpha[:, ::-1]))
    ImageAlphaDataset(images, alphas, "lsa", cache)[1]
    cached[1]
    assert len(list(cache.iterdir())) == 3


def test_background_set_draws_resolution_matched_backgrounds(backgrounds: BackgroundSet) -> None:
    assert len(backgrounds) == 6
    sizes = {backgrounds[i].shape[:2] for i in range(len(backgrounds))}
    assert len(sizes) == 6
    for seed in range(6):
        bg = backgrounds.draw(np.random.default_rng(seed), 700, 900)
        assert bg.shape == (700, 900, 3) and bg.dtype == np.float32
