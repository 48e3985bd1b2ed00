"""Per-paper training recipes, and the deterministic source of training samples they drive.

A :class:`Recipe` lists which steps of :mod:`training.data.composite`, :mod:`training.data.trimaps`
and :mod:`training.data.augment` a paper uses, with its parameters. A sample is built in two parts:

1. :func:`make_scene` (full resolution): the foreground layer (FBA's second foreground, LSA's colour
   augmentation, AlphaGAN's rotation, FBA's 2× scale) and a resolution-matched background.
2. :func:`make_sample`: training trimap or GFM glance targets, the crop and its resize, flip,
   gamma/brightness, RSSN denoising and blur, the composite and RSSN noise.

A sample is a dict of arrays: ``image``, ``fg``, ``bg`` (H×W×3 float32), ``alpha`` (H×W float32),
plus ``trimap`` (uint8 0/128/255) for trimap-based recipes, ``glance`` / ``transition`` (uint8) and
``focus`` (float32) for GFM, and ``trimap_target`` (uint8 classes 0/1/2) for AdaMatting. Without
RSSN noise, ``image`` is exactly ``composite(fg, alpha, bg)``.

:class:`TrainingSamples` numbers the samples of an epoch and seeds one generator per sample from
(seed, epoch, position), so sample p of epoch e is the same wherever and whenever it is made: a
resumed run, a data-loader worker and a test all see identical arrays. It shuffles the
foregrounds itself each epoch, so the trainer must read positions in order (no sampler shuffle).

FBA's scale alternation: the paper's sentence is garbled ("every second mini-batch is sampled from
the 2 × 10⁻⁵ image of the previous image"); it is read as "every second sample is the 2× version
of the previous one". Positions 2k and 2k+1 share one scene generator (same foreground, second
foreground, background and placement) and 2k+1 builds it at twice the size, then draws its own
trimap and crop. With batch size 1 (FBA's) every second mini-batch is then the 2× image.

AdaMatting is DIM style (its supplement gives no data recipe): random backgrounds, DIM trimaps (1-20 px
each side), 320/480/640 crops centred on the unknown band resized to 320, flips. Its trimap-adaptation
target is taken as the classes of the ground-truth alpha (0 where α = 0, 2 where α = 1, 1 between),
the reading that makes the adapted trimap the ideal one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.data.augment import (
    Sample,
    cover,
    crop,
    crop_window,
    flip,
    gamma_brightness,
    resize_sample,
    rotate,
    scale_sample,
    unknown_pixel,
)
from training.data.composite import (
    coin,
    colour_augment,
    composite,
    gaussian_blur,
    match_resolution,
    rssn_blur,
    rssn_denoise,
    rssn_noise,
    two_foregrounds,
)
from training.data.datasets import BackgroundSet, MattingItem
from training.data.trimaps import (
    RoSTa,
    alpha_classes,
    alphagan_trimap,
    band_trimap,
    dim_trimap,
    fba_trimap,
    glance_targets,
    lsa_trimap,
)

TrimapMaker = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# LSA's alphamatting.com model blurs F and B with p = 0.3; the blur size is not given.
LSA_BLUR_SIGMA = (0.5, 2.0)


@dataclass(frozen=True)
class Recipe:
    """The data steps of one paper; probabilities are per sample, sizes in pixels."""

    name: str
    crop_sizes: tuple[int, ...] = (320, 480, 640)  # one drawn uniformly...
    crop_range: tuple[int, int] | None = None  # ...or, if set, a size uniform in this closed range
    output_size: int | None = 320  # crops are resized to this square size (None: kept as cut)
    unknown_centred: bool = True  # crop centred on a random unknown pixel of the trimap
    trimap: TrimapMaker | None = None
    rosta: RoSTa | None = None  # GFM: glance targets for this representation
    trimap_target: bool = False  # AdaMatting: 3-class target from the ground-truth alpha
    two_foreground_p: float = 0.0
    colour_p: float = 0.0
    rotation_sigma: float = 0.0  # degrees
    photometric: bool = False
    flip_p: float = 0.5
    denoise_p: float = 0.0
    blur_p: float = 0.0
    noise_p: float = 0.0
    fb_blur_p: float = 0.0
    scale_alternation: bool = False
    repeats: int = 1  # samples per foreground per epoch (GFM composites each with K = 5 backgrounds)
    max_side: int | None = None  # foregrounds larger than this (long side, px) are shrunk to it first


def fba_recipe(**changes: object) -> Recipe:
    """FBA (digest §2.3): 320/480/640 crops on the unknown band (kept at that size: batch 1), 3-25 px trimaps,
    50% second foreground, flips, gamma and brightness, every second sample at 2×."""
    base = Recipe(
        "fba",
        output_size=None,
        trimap=fba_trimap,
        two_foreground_p=0.5,
        photometric=True,
        scale_alternation=True,
    )
    return dataclasses.replace(base, **changes)


def band_recipe(**changes: object) -> Recipe:
    """Band models: FBA's recipe with 384/512 crops (multiples of the coarse pass's 128), wide trimaps, and
    foregrounds shrunk to at most 1024 px (the 1080p pseudo-labels at 2x made 7-Mpixel scenes whose
    composition and trimaps cost several seconds per 384-px crop on two cores)."""
    base = dataclasses.replace(
        fba_recipe(), name="band", crop_sizes=(384, 512), trimap=band_trimap, max_side=1024
    )
    return dataclasses.replace(base, **changes)


def gfm_rssn_recipe(rosta: RoSTa = "TT", **changes: object) -> Recipe:
    """GFM COMP-RSSN: 640/960/1280 crops anywhere resized to 320, flips, RSSN denoise/blur/noise at
    p = 0.5 each, 5 backgrounds per foreground per epoch, glance targets for ``rosta``."""
    base = Recipe(
        f"gfm-{rosta.lower()}-rssn",
        crop_sizes=(640, 960, 1280),
        unknown_centred=False,
        rosta=rosta,
        denoise_p=0.5,
        blur_p=0.5,
        noise_p=0.5,
        repeats=5,
    )
    return dataclasses.replace(base, **changes)


def alphagan_recipe(**changes: object) -> Recipe:
    """AlphaGAN: rotation N(0, 5°), 2-20 px dilated trimaps, 320-720 crops on the band → 320, flips."""
    base = Recipe("alphagan", crop_range=(320, 720), trimap=alphagan_trimap, rotation_sigma=5.0)
    return dataclasses.replace(base, **changes)


def lsa_recipe(alphamatting: bool = False, **changes: object) -> Recipe:
    """LSA: colour augmentation (p = 0.5, the paper gives none), dilated {α>0}/{α<1} trimaps, flips;
    ``alphamatting`` adds the F and B blur (p = 0.3) of its alphamatting.com model. Its crop size
    was lost with Table 1; DIM's 320/480/640 → 320 is used."""
    base = Recipe(
        "lsa-alphamatting" if alphamatting else "lsa",
        trimap=lsa_trimap,
        colour_p=0.5,
        fb_blur_p=0.3 if alphamatting else 0.0,
    )
    return dataclasses.replace(base, **changes)


def adamatting_recipe(**changes: object) -> Recipe:
    """AdaMatting, DIM style (see the module docstring)."""
    base = Recipe("adamatting", trimap=dim_trimap, trimap_target=True)
    return dataclasses.replace(base, **changes)


RECIPES: dict[str, Callable[..., Recipe]] = {
    "fba": fba_recipe,
    "band": band_recipe,
    "gfm-rssn": gfm_rssn_recipe,
    "alphagan": alphagan_recipe,
    "lsa": lsa_recipe,
    "adamatting": adamatting_recipe,
}


def make_scene(
    recipe: Recipe,
    items: Sequence[MattingItem],
    index: int,
    backgrounds: BackgroundSet | None,
    rng: np.random.Generator,
    *,
    scale: float = 1.0,
) -> Sample:
    """The full-resolution layers of one sample: ``fg``, ``alpha`` and a matching ``bg``.

    The draws do not depend on ``scale``, so one generator state gives the same scene at any scale.
    Items without their own background need ``backgrounds``.
    """
    item = items[index]
    fg, alpha = item.fg, item.alpha
    if len(items) > 1 and coin(rng, recipe.two_foreground_p):
        other = items[(index + 1 + int(rng.integers(len(items) - 1))) % len(items)]
        fg, alpha = two_foregrounds(fg, alpha, other.fg, other.alpha)
    if recipe.colour_p > 0:
        fg = colour_augment(fg, rng, recipe.colour_p)
    if recipe.rotation_sigma > 0:
        fg, alpha, _ = rotate(fg, alpha, rng, recipe.rotation_sigma)
    layers = {"fg": fg, "alpha": alpha}
    if recipe.max_side is not None:
        scale *= min(1.0, recipe.max_side / max(alpha.shape))
    if scale != 1.0:
        layers = scale_sample(layers, scale)
    height, width = layers["alpha"].shape
    if item.bg is not None:
        bg = match_resolution(item.bg, height, width, rng)
    elif backgrounds is not None:
        bg = backgrounds.draw(rng, height, width)
    else:
        raise ValueError(f"{item.name} has no background of its own and no BackgroundSet was given")
    return {"fg": layers["fg"], "alpha": layers["alpha"], "bg": bg}


def make_sample(recipe: Recipe, scene: Sample, rng: np.random.Generator) -> Sample:
    """Trimap or glance targets, crop, resize, flip, photometric and RSSN steps, composite (module doc)."""
    if recipe.crop_range is not None:
        size = int(rng.integers(recipe.crop_range[0], recipe.crop_range[1] + 1))
    else:
        size = int(recipe.crop_sizes[int(rng.integers(len(recipe.crop_sizes)))])
    scene = dict(cover(scene, size))  # a new dict: the caller's scene is never modified
    alpha = scene["alpha"]
    if recipe.trimap is not None:
        scene["trimap"] = recipe.trimap(alpha, rng)
    if recipe.rosta is not None:
        scene.update(glance_targets(alpha, recipe.rosta))
    if recipe.trimap_target:
        scene["trimap_target"] = alpha_classes(alpha)
    centre = None
    if recipe.unknown_centred and "trimap" in scene:
        centre = unknown_pixel(scene["trimap"], rng)
    top, left = crop_window(alpha.shape, size, rng, centre)
    sample = crop(scene, top, left, size)
    out = recipe.output_size or size
    sample = resize_sample(sample, out, out)
    sample = flip(sample, rng, recipe.flip_p)
    fg, bg = sample["fg"], sample["bg"]
    if recipe.photometric:
        fg, bg = gamma_brightness(fg, rng), gamma_brightness(bg, rng)
    fg, bg = rssn_denoise(fg, bg, rng, recipe.denoise_p)
    bg = rssn_blur(bg, rng, recipe.blur_p, scale=out / size)
    fg = gaussian_blur(fg, rng, recipe.fb_blur_p, LSA_BLUR_SIGMA)
    bg = gaussian_blur(bg, rng, recipe.fb_blur_p, LSA_BLUR_SIGMA)
    sample["fg"], sample["bg"] = fg, bg
    sample["image"] = rssn_noise(composite(fg, sample["alpha"], bg), rng, recipe.noise_p)
    return sample


class TrainingSamples:
    """The samples of a recipe over a dataset: ``sample(position, epoch)`` is a pure function of
    (seed, epoch, position); see the module docstring."""

    def __init__(
        self,
        items: Sequence[MattingItem],
        backgrounds: BackgroundSet | None,
        recipe: Recipe,
        *,
        seed: int = 0,
    ) -> None:
        if len(items) == 0:
            raise ValueError("no training items")
        self.items = items
        self.backgrounds = backgrounds
        self.recipe = recipe
        self.seed = seed

    def __len__(self) -> int:
        per_scene = 2 if self.recipe.scale_alternation else 1
        return len(self.items) * self.recipe.repeats * per_scene

    def sample(self, position: int, epoch: int = 0) -> Sample:
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} outside 0..{len(self) - 1}")
        alternating = self.recipe.scale_alternation
        scene_number = position // 2 if alternating else position
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.items) * self.recipe.repeats)
        index = int(order[scene_number]) % len(self.items)
        scene_rng = np.random.default_rng([self.seed, epoch, scene_number, 0])
        scale = 2.0 if alternating and position % 2 else 1.0
        scene = make_scene(self.recipe, self.items, index, self.backgrounds, scene_rng, scale=scale)
        return make_sample(self.recipe, scene, np.random.default_rng([self.seed, epoch, position, 1]))
