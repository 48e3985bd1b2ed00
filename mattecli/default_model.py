"""The model the package ships, so `mattecli run` works with no --model, no GPU and no download.

It is a band model (``bandmatte-lite0``: an ImageNet-pretrained EfficientNet-Lite0 coarse pass once
per frame, full-resolution refinement only on the trimap's unknown band, FBA's alpha/F/B outputs and
fusion) that this project trained on its own data (``training/configs/bandmatte.toml``), exported to
one ONNX file with its contract and training facts (held-out images, validation scores) in the
metadata. The previous default, ``fba-resnet18-slim``, stays in the registry. Replacing it is
a matter of passing ``--model`` (README, "Replacing the default model").
"""

from __future__ import annotations

from pathlib import Path

from mattecli.errors import UnavailableError
from mattecli.models import ModelContract, read_onnx_contract

DEFAULT_MODEL_FILE = Path(__file__).with_name("weights") / "default.onnx"


def default_model_path() -> Path:
    """The packaged ONNX file; an installation without it is broken, not a user error."""
    if not DEFAULT_MODEL_FILE.is_file():
        raise UnavailableError(
            f"the packaged default model is missing ({DEFAULT_MODEL_FILE})",
            hint="reinstall mattecli, or give a model with --model",
        )
    return DEFAULT_MODEL_FILE


def default_model_contract() -> ModelContract:
    """The default model's contract, with its training facts and validation scores."""
    return read_onnx_contract(default_model_path())
