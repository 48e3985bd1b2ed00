"""Loading weights into a network with strict key matching and an error a user can act on.

Checkpoints come in several wrappings (a raw state dict, ``{"state_dict": ...}`` from training
scripts, ``{"model": ...}``) and with a ``module.`` prefix when saved from ``DataParallel``. All of
them load here; anything that does not match the network key for key and shape for shape raises
:class:`mattecli.errors.InputError` naming the file and the first offending keys, instead of
PyTorch's wall of text or, worse, a silently half-loaded model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from mattecli.errors import InputError

WRAPPER_KEYS = ("state_dict", "model")
DP_PREFIX = "module."
SHOW = 5  # keys listed per kind of mismatch


# torch's refusal names the first object it would not rebuild: "Unsupported global: GLOBAL a.b.C was ...".
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
PLAIN_STATE_DICT_HINT = (
    "mattecli reads checkpoints written by `mattecli train` and plain state dicts: where the file came "
    "from a trusted source, re-save only its weights in the environment that wrote it, "
    "e.g. torch.save(model.state_dict(), 'weights.pth')"
)


def read_checkpoint(path: str | Path) -> object:
    """A checkpoint file's contents, read safely (``weights_only=True``: tensors and plain data only).

    A file that pickles other Python objects (a whole ``nn.Module``, an optimiser, an
    ``argparse.Namespace`` of training options) is refused. torch's own message for that advises
    ``weights_only=False``, which would run whatever code the file carries; it is never passed on.
    The user is told what the file holds instead, and how to save a plain state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path=path, hint="check the path to the weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a dozen types for corrupt, truncated or unsafe files
        text = _ANSI.sub("", str(exc))
        if found := _REFUSED_GLOBAL.search(text):
            raise InputError(
                "not a plain state dict or mattecli checkpoint: the file pickles Python objects besides "
                f"tensors (first: {found.group(1)}), and mattecli does not unpickle those because loading "
                "them can run code from the file",
                path=path,
                hint=PLAIN_STATE_DICT_HINT,
            ) from None
        # A weights-only refusal of bytes that are no pickle at all: keep torch's reason, not its advice.
        _, _, reason = text.partition("WeightsUnpickler error:")
        lines = [line.strip() for line in (reason or text).splitlines() if line.strip()]
        detail = lines[0] if lines else "no details"
        raise InputError(
            f"cannot read this as a PyTorch checkpoint ({type(exc).__name__}: {detail})",
            path=path,
            hint="the file may be truncated or not a PyTorch checkpoint at all",
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and unwrap it to a state dict (any wrapper, ``module.`` stripped)."""
    return unwrap_state_dict(read_checkpoint(path), path=path)


def unwrap_state_dict(obj: object, *, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwrap ``state_dict``/``model`` entries, strip ``module.``."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            "the checkpoint holds no state dict (a mapping of parameter names to tensors)",
            path=path,
            hint="pass the weights file saved from the network, not a training log or an export",
        )
    state = dict(obj)
    if state and all(k.startswith(DP_PREFIX) for k in state):
        state = {k[len(DP_PREFIX) :]: v for k, v in state.items()}
    return state


def _listed(keys: list[str]) -> str:
    more = f", … ({len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def check_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    path: str | Path | None = None,
    expected: str | None = None,
) -> None:
    """Raise :class:`InputError` unless ``state`` has exactly ``model``'s keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or misshaped):
        return
    parts = [
        f"{len(missing)} missing, {len(unexpected)} unexpected and {len(misshaped)} mis-shaped keys "
        f"(the network has {len(own)}, the checkpoint {len(state)})"
    ]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            parts.append(f"{label}: {_listed(keys)}")
    what = (
        expected
        or getattr(model, "checkpoint_description", None)
        or f"a checkpoint for this {type(model).__name__} network"
    )
    raise InputError(
        "checkpoint does not match the network: " + "; ".join(parts),
        path=path,
        hint=f"is this {what}?",
    )


def load_checkpoint(
    model: nn.Module,
    source: str | Path | Mapping[str, torch.Tensor],
    *,
    expected: str | None = None,
) -> nn.Module:
    """Load ``source`` (a file path or an in-memory state dict, possibly wrapped) into ``model``.

    Matching is strict: every key of the network must be present with the same shape, and nothing
    else may be. ``expected`` describes the right checkpoint for the error's hint; by default
    the model's ``checkpoint_description`` attribute where it has one (FBA: "an FBA checkpoint for
    the resnet50 variant"). Returns ``model``.
    """
    if isinstance(source, str | Path):
        path: Path | None = Path(source)
        state = read_state_dict(path)
    else:
        path = None
        state = unwrap_state_dict(source)
    check_state_dict(model, state, path=path, expected=expected)
    model.load_state_dict(state, strict=True)
    return model
