"""Every training loss of the five papers (LSA, FBA, GFM, AdaMatting, AlphaGAN), as plain torch functions.

Sources: digest §1.2 (LSA), §2.2 (FBA), §3.2 (GFM), §4.2 (AdaMatting), §5.3 (AlphaGAN), §8 and §9.
The building blocks (alpha L1 and Charbonnier, compositional, Laplacian, gradient, exclusion,
cross-entropy, adversarial) come first; one function per paper then combines them the way that
paper does and returns a dict of named terms plus ``"total"``, so a trainer can log every term.

Conventions shared by every loss
    * Tensors are N×C×H×W. Alpha has C = 1, colours (image, F, B) C = 3.
    * ``mask`` is an N×1×H×W weight map (0/1 or soft in [0, 1]): the trimap's unknown region, GFM's
      transition area, or ``None`` for the whole image. It broadcasts over channels.
    * Normalisation: each loss first builds a per-pixel value, summing over channels (the ‖·‖₁ of a
      colour that the papers write), then takes the *mean over the mask's pixels*, pooled over the
      whole batch: ``Σ value·mask / Σ mask``. The papers write plain sums Σ_i; the mean is that sum
      divided by the region's size, which keeps a loss comparable across crop sizes (320² to 640²
      in FBA) and region sizes, and keeps whole-image terms (FBA's "Y*" F/B terms, GFM's
      collaborative loss) on the same scale as unknown-region ones. The relative weights the papers
      give their terms are unchanged.
    * An empty mask gives exactly 0 (not NaN), with a zero gradient.

Choices where the papers are silent, and why
    * Charbonnier: ``sqrt(d² + ε²)`` per element with ε = 1e-6 (DIM's value, which GFM states). With
      a colour it is applied per channel and summed, like the L1 form.
    * LSA multi-scale (§1.2): ``Σ_{ℓ=0}^{4} 2^{−ℓ} L(P^ℓ α̂, P^ℓ α)`` with P^ℓ average pooling of kernel
      and stride 2^ℓ. The paper does not say how the unknown region is pooled: here a coarse pixel
      belongs to it when *any* of its fine pixels does (max pooling of the mask), so a thin band
      of unknown pixels survives at every scale. Pooling uses ``ceil_mode``: edge windows that
      overhang the image average what they cover, so no pixel is dropped at any scale and crops
      smaller than 16 px still have five scales.
    * Laplacian pyramid (FBA, GFM): Burt & Adelson's, with the fixed 5×5 binomial kernel
      ``[1, 4, 6, 4, 1]ᵀ[1, 4, 6, 4, 1] / 256`` (a discrete Gaussian of variance 1 per axis) and
      reflect padding. REDUCE blurs and keeps every second row and column (even indices); EXPAND
      puts the coarse samples back at the even indices of the finer grid, zeros elsewhere, and
      blurs with 4× the kernel. Level s (s = 1…5) is the band ``G_{s−1} − EXPAND(REDUCE(G_{s−1}))``
      with ``G_0`` the input and ``G_s = REDUCE(G_{s−1})``: five band-pass levels; the low-pass
      residual ``G_5`` is not a level (the L1 alpha term already supervises the mean). Reflection
      keeps the parity of the zero-inserted grid, so a constant image has all bands 0 (up to
      rounding), up to every border. The pyramid is linear, so the loss is computed on the pyramid
      of the error ``mask·(α̂ − α)``: this is also what masking both inputs before the pyramid
      gives (as GFM's reference code does), and the loss never sees pixels outside the mask (the
      mask's border is an edge of the masked error, so a constant error inside the mask still
      costs something there). The coefficients of every level are summed with the level's weight
      (FBA ``2^{s−1}``, GFM 1) and divided by the mask's pixel count at full resolution: the
      papers' Σ over levels and pixels, normalised like every other loss. Five levels need a
      height and width of at least 33 px.
    * Gradients (FBA's gradient and exclusion losses): forward finite differences
      ``∂x = x[i, j+1] − x[i, j]`` and ``∂y = x[i+1, j] − x[i, j]``, set to 0 on the last column/row,
      each assigned to the pixel it starts from; ``‖∇x‖₁`` at a pixel is ``Σ_c |∂x| + |∂y|``. Plain
      differences (not Sobel) keep each loss local to a pixel and its two neighbours.
    * Exclusion (FBA): per pixel ``‖∇F̂‖₁ · ‖∇B̂‖₁`` (each norm over both directions and the three
      channels), averaged over the mask. It is zero wherever either layer is flat, so it only
      penalises structure present in both layers at the same pixel.
    * FBA total (§2.2): ``L1_α + Lc_α + Lg_α + Llap_α + 0.25·(L1_FB + Llap_FB + Lc_FB + Lexcl_FB)``,
      with L1_FB and Llap_FB over the whole image (the final model's "Y*" setting) and every other
      term over the unknown region (the paper does not say where the alpha terms are taken; the
      unknown region is where the trimap leaves alpha open). The printed Eq. 2 lists Lc_FB twice;
      the fourth term is the exclusion loss.
    * GFM (§3.2): focus target α for TT and FT, ``1 − α`` for BT (see ``training/networks/gfm.py``);
      the collaborative compositional loss compares the composite of GT F and B under GT α with the
      one under the predicted α (not the input image, which RSSN may have blurred or noised).
    * AdaMatting (§4.2): only the supplement is in the seeds. Trimap loss: cross-entropy over all
      pixels against the adapted-trimap classes; alpha loss: L1 over the unknown region (a choice:
      the main paper's alpha loss is not in the seeds). The two are combined by
      :class:`MultiTaskUncertainty` (reused from the network module, re-exported here).
    * AlphaGAN (§5.3): L_alpha and L_comp are DIM's Charbonnier losses over the unknown region. The
      discriminator sees ``[composite, trimap]``; real and fake composites are both rebuilt from GT
      F and B (GT α vs predicted α), so they differ only in alpha and D cannot tell them apart by
      augmentation noise of the input image. D's score is the mean patch logit
      (``PatchGANDiscriminator.score``, the paper's "mean of the patch responses"). D minimises the
      log-loss ``BCE(D(real), 1) + BCE(D(fake), 0)``, which is the paper's max over D of
      ``log D(x) + log(1 − D(C(G(x))))``. **Deviation**: the generator minimises the non-saturating
      ``−log D(fake)`` instead of ``log(1 − D(fake))``: same fixed point, but it does not vanish while
      D rejects fakes confidently, early in training (Goodfellow et al. 2014, §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from training.networks.adamatting import AdaMattingOutput, MultiTaskUncertainty
from training.networks.alphagan import PatchGANDiscriminator
from training.networks.gfm import GLANCE_CLASSES, GFMOutput

__all__ = [
    "CHARBONNIER_EPS",
    "FBA_FB_WEIGHT",
    "FBA_LAPLACIAN_WEIGHTS",
    "GFM_LAPLACIAN_WEIGHTS",
    "LSA_SCALES",
    "MattingTarget",
    "MultiTaskUncertainty",
    "adamatting_loss",
    "alphagan_discriminator_loss",
    "alphagan_generator_loss",
    "charbonnier_loss",
    "composite",
    "composition_charbonnier_loss",
    "composition_l1_loss",
    "cross_entropy_loss",
    "exclusion_loss",
    "fba_loss",
    "gfm_loss",
    "gradient_loss",
    "l1_loss",
    "laplacian_loss",
    "laplacian_pyramid",
    "lsa_loss",
    "multiscale_charbonnier_loss",
]

CHARBONNIER_EPS = 1e-6
FBA_LAPLACIAN_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)  # 2^(s−1), s = 1…5
GFM_LAPLACIAN_WEIGHTS: tuple[float, ...] = (1.0,) * 5
FBA_FB_WEIGHT = 0.25
LSA_SCALES = 5  # ℓ = 0…4
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
_PAD = len(_BINOMIAL) // 2


class MattingTarget(NamedTuple):
    """Ground truth of one batch, as the losses need it (all float N×C×H×W unless stated)."""

    image: torch.Tensor
    """The composite the network saw, N×3×H×W (C or I in the papers)."""
    alpha: torch.Tensor
    """GT alpha, N×1×H×W in [0, 1]."""
    fg: torch.Tensor
    """GT foreground colour, N×3×H×W (valid everywhere after foreground re-estimation)."""
    bg: torch.Tensor
    """GT background colour, N×3×H×W."""
    region: torch.Tensor
    """N×1×H×W weights of the region losses: the trimap's unknown band, or GFM's transition area."""
    classes: torch.Tensor | None = None
    """N×H×W int64 class labels: GFM's glance classes or AdaMatting's adapted-trimap classes."""


def composite(alpha: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``α·F + (1 − α)·B``, the compositing equation every compositional loss is built on."""
    return alpha * fg + (1.0 - alpha) * bg


def _region_mean(per_pixel: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of an N×1×H×W per-pixel loss over the mask's pixels (whole batch); 0 for an empty mask."""
    if mask is None:
        return per_pixel.mean()
    weights = _checked_mask(mask, per_pixel)
    return (per_pixel * weights).sum() / _count(weights)


def _checked_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    n, _, h, w = like.shape
    if mask.dim() != 4 or mask.shape[1] != 1 or (mask.shape[0], *mask.shape[2:]) != (n, h, w):
        raise ValueError(
            f"mask must be {n}×1×{h}×{w} to weight a {tuple(like.shape)} loss, got {tuple(mask.shape)}"
        )
    return mask.to(like.dtype)


def _count(weights: torch.Tensor) -> torch.Tensor:
    """Σ weights, or 1 for an empty mask: its numerator is 0, so the loss and its gradient are 0.

    (Clamping at a tiny positive count instead would scale the zero gradient by ~1e38 and turn
    it into NaN where the Laplacian's convolutions multiply it by zero weights.)
    """
    count = weights.sum()
    return torch.where(count > 0, count, torch.ones_like(count))


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def _charbonnier(diff: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-pixel Charbonnier, summed over channels: N×C×H×W → N×1×H×W."""
    return torch.sqrt(diff * diff + eps * eps).sum(dim=1, keepdim=True)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ ‖pred − target‖₁ / |mask|``: FBA's L1_α and (per layer) L1_FB."""
    _check_pair(pred, target)
    return _region_mean((pred - target).abs().sum(dim=1, keepdim=True), mask)


def charbonnier_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    eps: float = CHARBONNIER_EPS,
) -> torch.Tensor:
    """DIM's alpha-prediction loss ``Σ sqrt((α̂ − α)² + ε²) / |mask|`` (GFM's L_α, AlphaGAN's L_alpha).

    A smooth L1: about ``|α̂ − α|`` once the error is well above ε, exactly ε at zero error, and
    differentiable there.
    """
    _check_pair(pred, target)
    return _region_mean(_charbonnier(pred - target, eps), mask)


def multiscale_charbonnier_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scales: int = LSA_SCALES,
    eps: float = CHARBONNIER_EPS,
) -> torch.Tensor:
    """LSA's ``Σ_{ℓ=0}^{scales−1} 2^{−ℓ} · Charbonnier(P^ℓ α̂, P^ℓ α)`` (see the module doc for pooling)."""
    _check_pair(pred, target)
    total = pred.new_zeros(())
    for level in range(scales):
        k = 2**level
        p = F.avg_pool2d(pred, k, k, ceil_mode=True)
        t = F.avg_pool2d(target, k, k, ceil_mode=True)
        m = None if mask is None else F.max_pool2d(_checked_mask(mask, pred), k, k, ceil_mode=True)
        total = total + charbonnier_loss(p, t, m, eps=eps) / k
    return total


def composition_l1_loss(
    alpha: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """FBA's ``Σ ‖C − αF − (1 − α)B‖₁ / |mask|``.

    Predicted α with GT F and B gives Lc_α; GT α with predicted F and B gives Lc_FB.
    """
    return l1_loss(composite(alpha, fg, bg), image, mask)


def composition_charbonnier_loss(
    alpha: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    eps: float = CHARBONNIER_EPS,
) -> torch.Tensor:
    """DIM/AlphaGAN/GFM compositional loss: Charbonnier of ``C − αF − (1 − α)B`` per channel, summed."""
    return charbonnier_loss(composite(alpha, fg, bg), image, mask, eps=eps)


def _blur(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Depthwise 5×5 binomial blur with reflect padding (``scale`` multiplies the kernel)."""
    k1 = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device) / 16.0
    kernel = (scale * torch.outer(k1, k1)).expand(x.shape[1], 1, len(_BINOMIAL), len(_BINOMIAL))
    return F.conv2d(F.pad(x, (_PAD,) * 4, mode="reflect"), kernel, groups=x.shape[1])


def _reduce(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[..., ::2, ::2]


def _expand(coarse: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Coarse samples at the even indices of ``like``'s grid, zeros between, blurred with 4× the kernel."""
    up = like.new_zeros(like.shape)
    up[..., ::2, ::2] = coarse
    return _blur(up, 4.0)


def _min_pyramid_side(levels: int) -> int:
    """Smallest side for which every level's input is ≥ 3 px (reflect padding by 2 needs 3)."""
    side = 2 * _PAD - 1
    for _ in range(levels - 1):
        side = 2 * side - 1
    return side


def laplacian_pyramid(x: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
    """The ``levels`` band-pass levels of ``x`` (N×C×H×W), finest first; level s is H/2^(s−1) in size."""
    smallest = _min_pyramid_side(levels)
    if min(x.shape[-2:]) < smallest:
        raise ValueError(
            f"a {levels}-level Laplacian pyramid needs height and width of at least {smallest} px, "
            f"got {tuple(x.shape[-2:])}"
        )
    bands = []
    current = x
    for _ in range(levels):
        coarse = _reduce(current)
        bands.append(current - _expand(coarse, current))
        current = coarse
    return bands


def laplacian_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    weights: Sequence[float] = FBA_LAPLACIAN_WEIGHTS,
) -> torch.Tensor:
    """``Σ_s w_s Σ |Lap_s(mask·(pred − target))| / |mask|``, one level per weight (FBA: 2^(s−1); GFM: 1)."""
    _check_pair(pred, target)
    error = pred - target
    if mask is None:
        count = error.new_tensor(float(error.shape[0] * error.shape[2] * error.shape[3]))
    else:
        weights_map = _checked_mask(mask, error)
        error = error * weights_map
        count = _count(weights_map)
    bands = laplacian_pyramid(error, len(weights))
    total = sum((w * band.abs().sum() for w, band in zip(weights, bands, strict=True)), error.new_zeros(()))
    return total / count


def _gradient_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``Σ_c |∂x| + |∂y|`` of forward differences (0 past the last column/row): N×1×H×W."""
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return (dx.abs() + dy.abs()).sum(dim=1, keepdim=True)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FBA's ``Σ ‖∇α̂ − ∇α‖₁ / |mask|`` (differences are linear, so this is ‖∇(α̂ − α)‖₁)."""
    _check_pair(pred, target)
    return _region_mean(_gradient_norm(pred - target), mask)


def exclusion_loss(fg: torch.Tensor, bg: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FBA's ``Σ ‖∇F̂‖₁ · ‖∇B̂‖₁ / |mask|``: penalises an edge that shows up in both predicted layers."""
    _check_pair(fg, bg)
    return _region_mean(_gradient_norm(fg) * _gradient_norm(bg), mask)


def cross_entropy_loss(
    logits: torch.Tensor, classes: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel ``−log softmax(logits)[class]`` averaged over the mask; ``classes`` is N×H×W int64."""
    if classes.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"classes must be N×H×W = {(logits.shape[0], *logits.shape[2:])} for logits "
            f"{tuple(logits.shape)}, got {tuple(classes.shape)}"
        )
    per_pixel = F.cross_entropy(logits, classes.long(), reduction="none").unsqueeze(1)
    return _region_mean(per_pixel, mask)


def _with_total(terms: dict[str, torch.Tensor], total: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**terms, "total": total}


def fba_loss(pred: torch.Tensor, target: MattingTarget) -> dict[str, torch.Tensor]:
    """FBA's full loss (§2.2) from its raw 7-channel output (alpha, F, B); see the module doc for regions."""
    if pred.dim() != 4 or pred.shape[1] != 7:
        raise ValueError(f"FBA's output must be N×7×H×W (alpha, F, B), got {tuple(pred.shape)}")
    alpha, fg, bg = pred[:, :1], pred[:, 1:4], pred[:, 4:7]
    unknown = target.region
    alpha_terms = {
        "l1_alpha": l1_loss(alpha, target.alpha, unknown),
        "comp_alpha": composition_l1_loss(alpha, target.fg, target.bg, target.image, unknown),
        "grad_alpha": gradient_loss(alpha, target.alpha, unknown),
        "lap_alpha": laplacian_loss(alpha, target.alpha, unknown),
    }
    fb_terms = {
        "l1_fb": l1_loss(fg, target.fg) + l1_loss(bg, target.bg),
        "lap_fb": laplacian_loss(fg, target.fg) + laplacian_loss(bg, target.bg),
        "comp_fb": composition_l1_loss(target.alpha, fg, bg, target.image, unknown),
        "excl_fb": exclusion_loss(fg, bg, unknown),
    }
    total = sum(alpha_terms.values()) + FBA_FB_WEIGHT * sum(fb_terms.values())
    return _with_total({**alpha_terms, **fb_terms}, total)


def _required_classes(target: MattingTarget, who: str) -> torch.Tensor:
    if target.classes is None:
        raise ValueError(f"{who} needs MattingTarget.classes (N×H×W class labels)")
    return target.classes


def gfm_loss(output: GFMOutput, target: MattingTarget, *, rosta: str) -> dict[str, torch.Tensor]:
    """GFM's ``L_CE + L_FD + L_CM`` (§3.2), all weights 1; ``target.region`` is the transition area."""
    if rosta not in GLANCE_CLASSES:
        raise ValueError(f"rosta must be one of {tuple(GLANCE_CLASSES)}, got {rosta!r}")
    if output.glance.shape[1] != len(GLANCE_CLASSES[rosta]):
        raise ValueError(
            f"GFM-{rosta} has {len(GLANCE_CLASSES[rosta])} glance classes, "
            f"the output has {output.glance.shape[1]}"
        )
    focus_target = 1.0 - target.alpha if rosta == "BT" else target.alpha
    transition = target.region
    terms = {
        "glance": cross_entropy_loss(output.glance, _required_classes(target, "gfm_loss")),
        "focus_alpha": charbonnier_loss(output.focus, focus_target, transition),
        "focus_lap": laplacian_loss(output.focus, focus_target, transition, weights=GFM_LAPLACIAN_WEIGHTS),
        "collab_alpha": charbonnier_loss(output.alpha, target.alpha),
        "collab_lap": laplacian_loss(output.alpha, target.alpha, weights=GFM_LAPLACIAN_WEIGHTS),
        "collab_comp": composition_charbonnier_loss(
            output.alpha, target.fg, target.bg, composite(target.alpha, target.fg, target.bg)
        ),
    }
    terms["focus"] = terms["focus_alpha"] + terms["focus_lap"]
    terms["collaborative"] = terms["collab_alpha"] + terms["collab_lap"] + terms["collab_comp"]
    return _with_total(terms, terms["glance"] + terms["focus"] + terms["collaborative"])


def adamatting_loss(
    output: AdaMattingOutput, target: MattingTarget, uncertainty: MultiTaskUncertainty
) -> dict[str, torch.Tensor]:
    """AdaMatting's trimap cross-entropy and alpha L1 (unknown region), weighted by learned σ1, σ2."""
    terms = {
        "trimap": cross_entropy_loss(output.trimap_logits, _required_classes(target, "adamatting_loss")),
        "alpha": l1_loss(output.alpha, target.alpha, target.region),
    }
    return _with_total(terms, uncertainty(terms["trimap"], terms["alpha"]))


def lsa_loss(alpha: torch.Tensor, target: MattingTarget) -> dict[str, torch.Tensor]:
    """LSA's multi-scale Charbonnier alpha loss over the unknown region (§1.2)."""
    loss = multiscale_charbonnier_loss(alpha, target.alpha, target.region)
    return {"alpha": loss, "total": loss}


def _discriminator_input(alpha: torch.Tensor, target: MattingTarget, trimap: torch.Tensor) -> torch.Tensor:
    return torch.cat([composite(alpha, target.fg, target.bg), trimap], dim=1)


def alphagan_generator_loss(
    alpha: torch.Tensor,
    target: MattingTarget,
    trimap: torch.Tensor,
    discriminator: PatchGANDiscriminator,
) -> dict[str, torch.Tensor]:
    """AlphaGAN's generator objective ``L_alpha + L_comp + L_GAN`` (non-saturating GAN term).

    ``trimap`` is the generator's trimap channel (N×1×H×W, 0 / 0.5 / 1). The GAN term backpropagates
    into ``discriminator`` too: step only the generator's optimiser with this loss.
    """
    fake_score = discriminator.score(_discriminator_input(alpha, target, trimap))
    terms = {
        "alpha": charbonnier_loss(alpha, target.alpha, target.region),
        "comp": composition_charbonnier_loss(alpha, target.fg, target.bg, target.image, target.region),
        "gan": F.binary_cross_entropy_with_logits(fake_score, torch.ones_like(fake_score)),
    }
    return _with_total(terms, terms["alpha"] + terms["comp"] + terms["gan"])


def alphagan_discriminator_loss(
    alpha: torch.Tensor,
    target: MattingTarget,
    trimap: torch.Tensor,
    discriminator: PatchGANDiscriminator,
) -> dict[str, torch.Tensor]:
    """D's log-loss: real composites (GT α) labelled 1, fakes (predicted α, detached) labelled 0."""
    real_score = discriminator.score(_discriminator_input(target.alpha, target, trimap))
    fake_score = discriminator.score(_discriminator_input(alpha.detach(), target, trimap))
    terms = {
        "real": F.binary_cross_entropy_with_logits(real_score, torch.ones_like(real_score)),
        "fake": F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score)),
    }
    return _with_total(terms, terms["real"] + terms["fake"])
