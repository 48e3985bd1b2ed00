"""The JSON sidecar of a TensorRT engine: what it was built from, where, and whether it runs here.

A serialised TensorRT engine runs only under the TensorRT version that built it and on the GPU
model it was tuned for, unless it was built version- or hardware-compatible. Loading a mismatched
plan fails deep inside TensorRT (or, worse, runs slowly on kernels tuned for another GPU), so
mattecli writes ``<engine>.json`` beside every engine and checks it against the machine *before*
deserialising: the user gets one sentence naming every difference and the command that fixes it.

The sidecar also carries the model contract and the optimisation profiles, so ``run`` with a
``.engine`` needs no ONNX file and can tell which shapes the engine takes before it sends one
(:func:`engines.profiles.input_box` gives each input's box from its kind), and the engine's own
hash, so a sidecar left beside a different engine is caught. Everything here is plain Python (no
TensorRT) and tested without a GPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from engines.profiles import InputLayout, Profile, holds
from mattecli.errors import InputError
from mattecli.media.imageio import atomic_path
from mattecli.models import ModelContract

# 2: each input's box follows from its kind (band models included); format 1's channel counts are gone.
SIDECAR_FORMAT = 2
HardwareCompatibility = Literal["none", "ampere+", "same-cc"]
HARDWARE_COMPATIBILITY: tuple[HardwareCompatibility, ...] = ("none", "ampere+", "same-cc")
AMPERE = (8, 0)
# Version-compatible engines also load on the next major release for these pairs (TensorRT's
# "Engine Compatibility" page: 8.6+ -> 10, 10 -> 11); otherwise only later releases of the same major.
_CROSS_MAJOR = frozenset({(8, 10), (10, 11)})


def sidecar_path(engine: Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sm(capability: tuple[int, int]) -> str:
    """``(8, 6)`` -> ``sm_86``, the spelling CUDA and TensorRT logs use."""
    return f"sm_{capability[0]}{capability[1]}"


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@dataclass(frozen=True)
class EngineSidecar:
    """Everything ``run`` needs to know about an engine before handing it to TensorRT."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    onnx_file: str  # the ONNX file it was built from, for the "rebuild with" hint
    onnx_sha256: str
    engine_sha256: str
    profiles: tuple[Profile, ...]
    precision: Literal["fp32", "fp16"]
    contract: ModelContract
    mattecli_version: str
    version_compatible: bool = False
    hardware_compatibility: HardwareCompatibility = "none"
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def same_build(self, other: EngineSidecar) -> bool:
        """Whether ``other`` describes the same build inputs (ignores time, hash and mattecli version)."""
        keys = (
            "tensorrt_version",
            "gpu_name",
            "compute_capability",
            "onnx_sha256",
            "profiles",
            "precision",
            "version_compatible",
            "hardware_compatibility",
        )
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def layouts(self) -> tuple[InputLayout, ...]:
        """The engine's inputs (graph name, the kind the contract feeds it), in contract order."""
        return tuple(InputLayout(name, kind) for name, kind in self.contract.inputs)

    def accepts(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        """Whether one call with inputs of these shapes (keyed by graph input name) fits a profile.

        All inputs must fit the same optimisation profile: TensorRT runs a call under one
        profile at a time (see :func:`engines.profiles.holds`).
        """
        layouts = self.layouts()
        return any(holds(p, layouts, shapes) for p in self.profiles)

    def to_json(self) -> dict[str, object]:
        return {
            "format": SIDECAR_FORMAT,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "engine_sha256": self.engine_sha256,
            "profiles": [p.to_json() for p in self.profiles],
            "precision": self.precision,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility,
            "mattecli_version": self.mattecli_version,
            "created": self.created,
            "contract": json.loads(self.contract.to_json()),
        }

    @classmethod
    def from_json(cls, data: dict[str, object], *, source: Path) -> EngineSidecar:
        if data.get("format") != SIDECAR_FORMAT:
            raise InputError(
                f"sidecar format {data.get('format')!r} is not the one this mattecli reads "
                f"({SIDECAR_FORMAT})",
                path=source,
                hint="rebuild the engine with this version's `mattecli build-engine`",
            )
        try:
            hardware = str(data["hardware_compatibility"])
            if hardware not in HARDWARE_COMPATIBILITY:
                raise ValueError(f"unknown hardware_compatibility {hardware!r}")
            precision = str(data["precision"])
            if precision not in ("fp32", "fp16"):
                raise ValueError(f"unknown precision {precision!r}")
            major, minor = (int(v) for v in data["compute_capability"])  # type: ignore[attr-defined]
            profiles = tuple(Profile.from_json(p) for p in data["profiles"])  # type: ignore[attr-defined]
            if not profiles:
                raise ValueError("no optimisation profile")
            return cls(
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=(major, minor),
                onnx_file=str(data["onnx_file"]),
                onnx_sha256=str(data["onnx_sha256"]),
                engine_sha256=str(data["engine_sha256"]),
                profiles=profiles,
                precision=precision,  # type: ignore[arg-type]
                contract=ModelContract.from_json(json.dumps(data["contract"]), source=str(source)),
                mattecli_version=str(data["mattecli_version"]),
                version_compatible=bool(data["version_compatible"]),
                hardware_compatibility=hardware,  # type: ignore[arg-type]
                created=str(data["created"]),
            )
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"the engine sidecar is incomplete or damaged ({type(exc).__name__}: {exc})",
                path=source,
                hint="rebuild the engine with `mattecli build-engine MODEL.onnx`, which rewrites it",
            ) from None


def write_sidecar(engine: Path, sidecar: EngineSidecar) -> Path:
    """Write ``<engine>.json`` atomically and return its path."""
    path = sidecar_path(engine)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(sidecar.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def read_sidecar(engine: Path) -> EngineSidecar:
    """The sidecar beside ``engine``; InputError if it is missing or unreadable."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise InputError(
            f"no sidecar {path.name} beside this engine",
            path=engine,
            hint="mattecli runs only engines written by `mattecli build-engine`, which puts the "
            "sidecar next to them: copy it along with the engine, or rebuild with "
            "`mattecli build-engine MODEL.onnx`",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"the engine sidecar cannot be read ({exc})",
            path=path,
            hint="rebuild the engine with `mattecli build-engine MODEL.onnx`, which rewrites it",
        ) from None
    if not isinstance(data, dict):
        raise InputError("the engine sidecar is not a JSON object", path=path)
    return EngineSidecar.from_json(data, source=path)


def _runtime_loads(built: str, runtime: str, version_compatible: bool) -> bool:
    """Whether a runtime of version ``runtime`` deserialises a plan built by ``built``."""
    b, r = _version_tuple(built), _version_tuple(runtime)
    if not version_compatible:
        return b == r
    return r >= b and (r[0] == b[0] or (b[0], r[0]) in _CROSS_MAJOR)


def check_sidecar(
    sidecar: EngineSidecar,
    *,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    onnx_sha256: str | None = None,
    engine: Path | None = None,
) -> None:
    """Raise InputError listing every way ``sidecar``'s engine cannot run on this machine.

    ``onnx_sha256``, where the caller knows which ONNX file the engine should come from, also
    refuses an engine built from another file.
    """
    reasons: list[str] = []
    if not _runtime_loads(sidecar.tensorrt_version, trt_version, sidecar.version_compatible):
        if sidecar.version_compatible:
            reasons.append(
                f"a version-compatible engine from TensorRT {sidecar.tensorrt_version} loads only on a later "
                f"release of the same major version, not on {trt_version}"
            )
        else:
            reasons.append(
                f"TensorRT differs ({sidecar.tensorrt_version} vs {trt_version}) and the engine was not "
                "built --version-compatible"
            )
    built_cc, cc = sidecar.compute_capability, tuple(compute_capability)
    if sidecar.hardware_compatibility == "ampere+":
        if cc < AMPERE:
            reasons.append(f"the engine was built for Ampere or newer GPUs (sm_80+), this GPU is {sm(cc)}")  # type: ignore[arg-type]
    elif cc != built_cc:
        reasons.append(f"compute capability differs ({sm(built_cc)} vs {sm(cc)})")  # type: ignore[arg-type]
    elif sidecar.hardware_compatibility == "none" and gpu_name != sidecar.gpu_name:
        reasons.append(
            f"GPU model differs ({sidecar.gpu_name} vs {gpu_name}): TensorRT tunes an engine for the GPU "
            "that built it unless it is built with --hardware-compatibility"
        )
    if onnx_sha256 is not None and onnx_sha256 != sidecar.onnx_sha256:
        reasons.append(
            f"it was built from another ONNX file (sha256 {sidecar.onnx_sha256[:12]}…, "
            f"the given model has {onnx_sha256[:12]}…)"
        )
    if reasons:
        raise InputError(
            f"engine built with TensorRT {sidecar.tensorrt_version} on {sidecar.gpu_name} ({sm(built_cc)}); "
            f"this machine has TensorRT {trt_version} on {gpu_name} ({sm(cc)}): " + "; ".join(reasons),  # type: ignore[arg-type]
            path=engine,
            hint=f"rebuild with `mattecli build-engine {sidecar.onnx_file}` on this machine",
        )


def verify_engine_file(engine: Path, sidecar: EngineSidecar) -> None:
    """Refuse an engine whose bytes are not the ones its sidecar describes."""
    digest = file_sha256(engine)
    if digest != sidecar.engine_sha256:
        raise InputError(
            f"this engine does not match its sidecar (sha256 {digest[:12]}…, the sidecar "
            f"describes {sidecar.engine_sha256[:12]}…): the engine was replaced after it was built",
            path=engine,
            hint=f"rebuild with `mattecli build-engine {sidecar.onnx_file}`, which writes both files",
        )
