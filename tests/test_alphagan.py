"""AlphaGAN: generator sizes against supplementary Table 4, unpooling, PatchGAN shapes and field."""

from __future__ import annotations

import pytest
import torch

from training.networks.alphagan import (
    AlphaGANGenerator,
    alphagan_generator,
    patchgan_discriminator,
    receptive_field,
)


@pytest.fixture(scope="module")
def generator() -> AlphaGANGenerator:
    torch.manual_seed(0)
    return alphagan_generator().eval()


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("n", "h", "w"), [(1, 64, 64), (2, 64, 96)])
def test_generator_output_shape(generator: AlphaGANGenerator, n: int, h: int, w: int) -> None:
    with torch.no_grad():
        alpha = generator(torch.randn(n, 4, h, w))
    assert alpha.shape == (n, 1, h, w)
    assert bool(((alpha > 0) & (alpha < 1)).all())  # sigmoid


def test_generator_sizes_at_320_match_table_4() -> None:
    """Shapes only, on the meta device: 40×40 at OS 8, 80 after ×2, 160 after unpooling, 320 after
    the transposed conv (supplementary Table 4)."""
    with torch.device("meta"):
        net = alphagan_generator().eval()
    seen: dict[str, tuple[int, ...]] = {}

    def record(name: str, tensor: torch.Tensor) -> None:
        seen[name] = tuple(tensor.shape[1:])

    for name in ("encoder.layer1", "encoder.layer3", "encoder.layer4", "aspp", "deconv1", "deconv2"):
        net.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: record(name, o))
    for name in ("deconv2", "deconv4"):
        net.get_submodule(name).register_forward_pre_hook(lambda m, i, name=name: record(f"{name}.in", i[0]))
    alpha = net(torch.empty(1, 4, 320, 320, device="meta"))
    assert seen == {
        "encoder.layer1": (256, 80, 80),
        "encoder.layer3": (1024, 40, 40),
        "encoder.layer4": (2048, 40, 40),
        "aspp": (256, 40, 40),
        "deconv1": (64, 80, 80),  # after the bilinear ×2 and the 48-channel conv2_x skip
        "deconv2.in": (64 + 32, 160, 160),  # unpooled to stride 2, plus the 32-channel conv1 skip
        "deconv2": (32, 320, 320),  # the stride-½ conv restores the input size
        "deconv4.in": (32 + 3, 320, 320),  # the RGB skip
    }
    assert alpha.shape == (1, 1, 320, 320)


def test_unpooling_puts_values_at_the_saved_max_pool_indices(generator: AlphaGANGenerator) -> None:
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        generator.deconv1.register_forward_hook(lambda m, i, o: captured.__setitem__("pooled", o)),
        generator.deconv2.register_forward_pre_hook(lambda m, i: captured.__setitem__("unpooled", i[0])),
    ]
    torch.manual_seed(4)
    x = torch.randn(1, 4, 64, 64)
    try:
        with torch.no_grad():
            generator(x)
            (stem, *_), indices = generator.encoder.forward_with_indices(x)
    finally:
        for hook in hooks:
            hook.remove()
    pooled = captured["pooled"].flatten(2)
    unpooled = captured["unpooled"][:, :64]
    assert unpooled.shape == stem.shape  # back at the stem's stride 2
    unpooled = unpooled.flatten(2)
    idx = indices.flatten(2)
    targets = torch.zeros_like(unpooled, dtype=torch.bool).scatter_(2, idx, True)
    assert torch.all(unpooled[~targets] == 0)  # nothing lands outside a recorded argmax
    writers = torch.zeros_like(unpooled).scatter_add_(2, idx, torch.ones_like(pooled))
    single = writers.gather(2, idx) == 1  # argmax chosen by one pooling window only
    assert single.any() and (pooled[single] != 0).any()
    assert torch.equal(unpooled.gather(2, idx)[single], pooled[single])


@pytest.mark.parametrize(("n", "h", "w", "out_h", "out_w"), [(1, 64, 64, 6, 6), (2, 96, 128, 10, 14)])
@pytest.mark.parametrize("norm", ["bn", "in"])
def test_discriminator_patch_map_and_score(n: int, h: int, w: int, out_h: int, out_w: int, norm: str) -> None:
    torch.manual_seed(0)
    disc = patchgan_discriminator(norm=norm).eval()
    x = torch.randn(n, 4, h, w)
    with torch.no_grad():
        logits = disc(x)
        score = disc.score(x)
    assert logits.shape == (n, 1, out_h, out_w)
    assert score.shape == (n,)
    torch.testing.assert_close(score, logits.mean(dim=(1, 2, 3)))


def test_patchgan_receptive_field_is_70() -> None:
    """Analytically, and empirically: one logit's input gradient is non-zero on a 70×70 window."""
    assert receptive_field((4, 4, 4, 4, 4), (2, 2, 2, 1, 1)) == 70
    torch.manual_seed(0)
    disc = patchgan_discriminator().double().eval()  # eval: BN uses running stats, no batch coupling
    assert disc.receptive_field == 70
    x = torch.randn(1, 4, 160, 160, dtype=torch.float64, requires_grad=True)
    logits = disc(x)
    assert logits.shape[-2:] == (18, 18)
    logits[0, 0, 9, 9].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)), as_tuple=True)
    assert int(rows.min()) > 0 and int(rows.max()) < 159  # away from the zero padding
    assert int(cols.min()) > 0 and int(cols.max()) < 159
    assert int(rows.max() - rows.min()) + 1 == 70
    assert int(cols.max() - cols.min()) + 1 == 70
    assert int(torch.count_nonzero(x.grad.abs().sum(dim=(0, 1)))) == 70 * 70


def test_parameter_counts(generator: AlphaGANGenerator) -> None:
    # ResNet-50 without its classifier, with a 4-channel conv1 (+64·7·7 over the RGB model).
    assert _n_params(generator.encoder) == 23_508_032 + 64 * 7 * 7
    assert _n_params(generator.aspp) == 15_535_104
    assert _n_params(generator) == 40_261_345
    assert _n_params(patchgan_discriminator()) == 2_766_657


def test_discriminator_rejects_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm must be one of"):
        patchgan_discriminator(norm="gn")
