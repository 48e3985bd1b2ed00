"""Training data in NumPy: datasets on disk, foreground re-estimation, composition, trimaps, augmentation.

Nothing here imports torch; a sample is a dict of float32/uint8 arrays (see
:mod:`training.data.recipes`), turned into tensors by the trainer. Typical use::

    from training.data import (
        BackgroundSet, ImageAlphaDataset, TrainingSamples, fba_recipe, split_names,
    )

    train, held_out = split_names(names, holdout=5, seed=0)
    items = ImageAlphaDataset(image_dir, alpha_dir, "ml", cache_dir, names=train)
    samples = TrainingSamples(items, BackgroundSet(bg_dir), fba_recipe(), seed=0)
    sample = samples.sample(position, epoch)  # identical on every run and every worker
"""

from training.data.datasets import (
    BackgroundSet,
    ForegroundDataset,
    ImageAlphaDataset,
    MattingItem,
    split_names,
)
from training.data.recipes import (
    RECIPES,
    Recipe,
    TrainingSamples,
    adamatting_recipe,
    alphagan_recipe,
    fba_recipe,
    gfm_rssn_recipe,
    lsa_recipe,
    make_sample,
    make_scene,
)

__all__ = [
    "RECIPES",
    "BackgroundSet",
    "ForegroundDataset",
    "ImageAlphaDataset",
    "MattingItem",
    "Recipe",
    "TrainingSamples",
    "adamatting_recipe",
    "alphagan_recipe",
    "fba_recipe",
    "gfm_rssn_recipe",
    "lsa_recipe",
    "make_sample",
    "make_scene",
    "split_names",
]
