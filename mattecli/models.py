"""Model registry, torch-free half: what each network expects and returns (its *contract*).

An exported ONNX file carries its contract as JSON in its metadata (key ``mattecli.contract``),
so ``mattecli run model.onnx`` needs nothing else: which inputs to build from the frame and
trimap, the size multiple, how to bring a frame to that multiple, and which outputs come back.
The constructors that build the PyTorch networks live in ``training/registry.py``; this module
must stay importable with the base install (no torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mattecli.errors import InputError

if TYPE_CHECKING:
    import onnx

METADATA_KEY = "mattecli.contract"
_EXPORTED_HINT = "give the .onnx file `mattecli export` wrote"

# What each graph input is made from. Every image input is RGB in [0, 1], NCHW, float32;
# normalisation (ImageNet mean/std) happens inside the graph so no engine can forget it.
InputKind = Literal[
    "image",  # N x 3 x H x W, RGB in [0, 1]
    "trimap_2ch",  # N x 2 x H x W: definite background, definite foreground (0/1)
    "trimap_gauss6",  # N x 6 x H x W: FBA's Gaussian distance encoding of the 2-channel trimap
    "trimap_1ch",  # N x 1 x H x W: 0 background, 0.5 unknown, 1 foreground
    # Band models (mattecli.band_inputs): the shrunk frame with its trimap encodings, the unknown
    # band's full-resolution patches, and each patch's window into the coarse map (int64).
    "band_coarse",  # 1 x 11 x H/4 x W/4
    "band_patches",  # P x 5 x 22 x 22
    "band_index",  # P x 64 int64
]
# What each graph output holds.
OutputKind = Literal[
    "alpha",  # N x 1 x H x W in [0, 1]
    "foreground",  # N x 3 x H x W in [0, 1]
    "background",  # N x 3 x H x W in [0, 1]
    "trimap_logits",  # N x 3 x H x W (AdaMatting's adapted trimap)
    "glance",  # N x C x H x W (GFM's glance probabilities)
]


# Inputs that are not float32 images: integer indices.
_INTEGER_INPUTS = frozenset({"band_index"})


def input_dtype(kind: str) -> type:
    """The NumPy dtype an engine feeds for input ``kind`` (float32, or int64 for index inputs)."""
    import numpy as np

    return np.int64 if kind in _INTEGER_INPUTS else np.float32


@dataclass(frozen=True)
class ModelContract:
    """The preprocessing and output contract of one network variant."""

    name: str  # registry name, e.g. "fba-resnet50"
    architecture: Literal["fba", "gfm", "alphagan", "adamatting", "lsa", "band"]
    paper: str  # which paper it reproduces, for `mattecli info`
    inputs: tuple[tuple[str, InputKind], ...]  # graph input name -> what to feed
    outputs: tuple[tuple[str, OutputKind], ...]  # graph output name -> what it holds
    size_multiple: int  # H and W must be multiples of this (output stride of the encoder)
    # How a frame is brought to the size multiple. "pad" reflects the border out to the next
    # multiple and crops the result back; it keeps pixels 1:1, which tiling needs.
    resize: Literal["pad"] = "pad"
    needs_trimap: bool = True
    fusion: Literal["fba", "none"] = "none"  # post-processing the outputs support
    # Free-form facts about the weights (training data, validation scores) shown by `info`.
    weights: dict[str, object] = field(default_factory=dict)

    def input_kinds(self) -> set[str]:
        return {kind for _, kind in self.inputs}

    def output_name(self, kind: OutputKind) -> str | None:
        """The graph output that holds ``kind``, or None if this model has none."""
        return next((name for name, k in self.outputs if k == kind), None)

    def with_weights(self, **facts: object) -> ModelContract:
        return replace(self, weights={**self.weights, **facts})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str | Path = "model") -> ModelContract:
        """Parse and check a contract; one InputError naming ``source`` and every bad field."""
        from mattecli.contract_validation import contract_from_data

        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(
                f"the model's mattecli contract metadata is not JSON ({exc})",
                path=source,
                hint="re-export the model with `mattecli export`",
            ) from None
        return contract_from_data(data, source)


_FBA_INPUTS: tuple[tuple[str, InputKind], ...] = (
    ("image", "image"),
    ("trimap", "trimap_2ch"),
    ("trimap_gauss", "trimap_gauss6"),
)
_FBA_OUTPUTS: tuple[tuple[str, OutputKind], ...] = (
    ("alpha", "alpha"),
    ("foreground", "foreground"),
    ("background", "background"),
)
_RGB_TRIMAP: tuple[tuple[str, InputKind], ...] = (("image", "image"), ("trimap", "trimap_1ch"))


def _fba(encoder: str, suffix: str = "") -> ModelContract:
    return ModelContract(
        name=f"fba-{encoder}{suffix}",
        architecture="fba",
        paper="F, B, Alpha Matting (Forte & Pitie, 2020)",
        inputs=_FBA_INPUTS,
        outputs=_FBA_OUTPUTS,
        size_multiple=8,
        fusion="fba",
    )


# A band model's outputs are per patch (P x C x 16 x 16 cells), not per frame.
BAND_MODEL = ModelContract(
    name="bandmatte-lite0",
    architecture="band",
    paper="FBA Matting's outputs and fusion; BackgroundMattingV2's coarse pass + patch refiner",
    inputs=(("band_coarse", "band_coarse"), ("band_patches", "band_patches"), ("band_index", "band_index")),
    outputs=_FBA_OUTPUTS,
    size_multiple=128,
    fusion="fba",
)

CONTRACTS: dict[str, ModelContract] = {
    c.name: c
    for c in (
        BAND_MODEL,
        _fba("resnet50"),
        _fba("resnet34"),
        _fba("resnet18"),
        _fba("resnet18", "-slim"),  # every channel count halved: the CPU default model
        *(
            ModelContract(
                name=f"gfm-{rosta.lower()}",
                architecture="gfm",
                paper="Bridging Composite and Real: End-to-end Deep Image Matting (GFM, Li et al., 2022)",
                inputs=(("image", "image"),),
                outputs=(("alpha", "alpha"),),
                size_multiple=32,
                needs_trimap=False,
            )
            for rosta in ("TT", "FT", "BT")
        ),
        ModelContract(
            name="alphagan",
            architecture="alphagan",
            paper="AlphaGAN: Generative adversarial networks for natural image matting (Lutz et al., 2018)",
            inputs=_RGB_TRIMAP,
            outputs=(("alpha", "alpha"),),
            size_multiple=8,
        ),
        ModelContract(
            name="adamatting",
            architecture="adamatting",
            paper="Disentangled Image Matting (AdaMatting, Cai et al., 2019)",
            inputs=_RGB_TRIMAP,
            outputs=(("alpha", "alpha"), ("trimap_logits", "trimap_logits")),
            size_multiple=32,
        ),
        ModelContract(
            name="lsa",
            architecture="lsa",
            paper="Improving Deep Image Matting via Local Smoothness Assumption (Wang et al., 2022)",
            inputs=_RGB_TRIMAP,
            outputs=(("alpha", "alpha"),),
            size_multiple=32,
        ),
    )
}


def contract_for(name: str) -> ModelContract:
    """The contract registered under ``name``; the error lists the known names."""
    try:
        return CONTRACTS[name]
    except KeyError:
        known = ", ".join(sorted(CONTRACTS))
        raise InputError(f"unknown model name {name!r}", hint=f"known models: {known}") from None


def contract_from_metadata(meta: Mapping[str, str], source: Path | str) -> ModelContract:
    """The contract in an ONNX file's metadata map (from ONNX Runtime or the onnx package)."""
    if METADATA_KEY not in meta:
        raise InputError(
            "this ONNX file has no mattecli contract in its metadata",
            path=source,
            hint="export it with `mattecli export`, which records the inputs the model expects",
        )
    return ModelContract.from_json(meta[METADATA_KEY], source=str(source))


def load_onnx(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file (weights stored outside it are not read), with a user error if it is not one."""
    import onnx

    if not path.is_file():
        raise InputError("ONNX file not found", path=path, hint=_EXPORTED_HINT)
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors: all mean "not ONNX"
        first = str(exc).strip().splitlines()
        raise InputError(
            f"not a readable ONNX file ({first[0] if first else type(exc).__name__})",
            path=path,
            hint=_EXPORTED_HINT,
        ) from None


def read_onnx_contract(path: Path) -> ModelContract:
    """The contract of an exported ONNX file, read without starting an inference session."""
    from mattecli.contract_validation import check_graph_names

    proto = load_onnx(path)
    contract = contract_from_metadata({p.key: p.value for p in proto.metadata_props}, path)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [v.name for v in proto.graph.input if v.name not in initializers]
    check_graph_names(contract, inputs, [v.name for v in proto.graph.output], path)
    return contract
