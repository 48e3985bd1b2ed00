"""TensorRT backend, the parts that need no GPU: optimisation profiles, the engine sidecar and its
checks against a machine, and how ``open_engine("trt", ...)`` fails where TensorRT is missing.

Band models' profiles are checked against the feeds the real band predictor builds
(:class:`mattecli.band_predictor.BandPlan`) for real frames and trimaps of several sizes.

The build and the run path themselves are exercised by the ``gpu`` test in test_build_engine.py.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.base import Device, open_engine
from engines.profiles import (
    InputLayout,
    Profile,
    band_profile,
    explicit_profile,
    input_box,
    parse_shape,
    select_profile,
    tile_profiles,
)
from engines.sidecar import (
    EngineSidecar,
    check_sidecar,
    file_sha256,
    read_sidecar,
    sidecar_path,
    verify_engine_file,
    write_sidecar,
)
from engines.tensorrt import cuda_gpu
from mattecli.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, InputError, UnavailableError
from mattecli.models import BAND_MODEL, contract_for
from mattecli.tiling import padded_size, plan_tiles

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None

# ---------------------------------------------------------------------------------------------
# Profiles


def test_tile_profile_covers_one_small_tile_up_to_a_full_batch() -> None:
    (profile,) = tile_profiles(512, 4, 32)
    assert profile == Profile(min=(1, 32, 32), opt=(4, 512, 512), max=(4, 512, 512))
    assert input_box(profile, "trimap_gauss6") == ((1, 6, 32, 32), (4, 6, 512, 512), (4, 6, 512, 512))
    assert input_box(profile, "image") == ((1, 3, 32, 32), (4, 3, 512, 512), (4, 3, 512, 512))


def test_max_size_adds_a_batch_one_frame_profile_padded_to_the_multiple() -> None:
    tiles, frame = tile_profiles(512, 4, 32, max_size=1080)
    assert tiles.max == (4, 512, 512)  # the tile box is not widened to frame size
    assert frame == Profile(min=(1, 32, 32), opt=(1, 1088, 1088), max=(1, 1088, 1088))


@pytest.mark.parametrize(
    ("tile", "multiple", "suggestion"),
    [(500, 32, "--tile 480 or 512"), (16, 32, "--tile 32 or 64"), (100, 8, "--tile 96 or 104")],
)
def test_tile_not_a_multiple_is_refused_with_the_nearest_sizes(
    tile: int, multiple: int, suggestion: str
) -> None:
    with pytest.raises(InputError) as info:
        tile_profiles(tile, 4, multiple)
    assert f"--tile {tile} is not a multiple of this model's size multiple {multiple}" in info.value.message
    assert suggestion in info.value.hint


def test_batch_and_max_size_must_be_positive() -> None:
    with pytest.raises(InputError, match="--batch 0"):
        tile_profiles(512, 0, 32)
    with pytest.raises(InputError, match="--max-size 0"):
        tile_profiles(512, 4, 32, max_size=0)


@pytest.mark.parametrize(
    ("text", "shape"), [("4x512x512", (4, 512, 512)), ("1X64x96", (1, 64, 96)), ("2×8×8", (2, 8, 8))]
)
def test_parse_shape(text: str, shape: tuple[int, int, int]) -> None:
    assert parse_shape(text, option="--opt") == shape


@pytest.mark.parametrize("text", ["512x512", "4x512x512x3", "ax512x512", "0x64x64", "4x-8x64", ""])
def test_parse_shape_refuses_what_is_not_n_h_w(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_shape(text, option="--max")
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "--max 4x512x512" in info.value.hint


def test_explicit_profile_accepts_ordered_multiples() -> None:
    profile = explicit_profile((1, 64, 64), (4, 512, 512), (8, 1024, 2048), 32)
    assert profile.to_json() == {"min": [1, 64, 64], "opt": [4, 512, 512], "max": [8, 1024, 2048]}
    assert Profile.from_json(profile.to_json()) == profile


def test_explicit_profile_lists_every_ordering_and_multiple_problem() -> None:
    with pytest.raises(InputError) as info:
        explicit_profile((1, 64, 64), (4, 32, 500), (2, 512, 512), 32)
    message = info.value.message
    assert "batch must satisfy min <= opt <= max (got 1, 4, 2)" in message
    assert "height must satisfy min <= opt <= max (got 64, 32, 512)" in message
    assert message.count("must satisfy") == 2  # width 64 <= 500 <= 512 is in order
    assert "--opt 4x32x500: width 500 not a multiple of 32" in message
    assert "--min" not in message and "--max 2x" not in message


FBA_LAYOUT = [InputLayout("image", "image"), InputLayout("trimap", "trimap_2ch")]


def _nchw(n: int, h: int, w: int) -> dict[str, tuple[int, int, int, int]]:
    return {"image": (n, 3, h, w), "trimap": (n, 2, h, w)}


def test_select_profile_picks_the_first_box_that_holds_the_batch() -> None:
    profiles = tile_profiles(512, 4, 32, max_size=1920)
    assert select_profile(profiles, FBA_LAYOUT, _nchw(4, 512, 512)) == 0
    assert select_profile(profiles, FBA_LAYOUT, _nchw(3, 256, 384)) == 0  # a short batch of small tiles
    assert select_profile(profiles, FBA_LAYOUT, _nchw(1, 1088, 1920)) == 1  # a whole padded HD frame
    with pytest.raises(InputError) as info:
        select_profile(profiles, FBA_LAYOUT, _nchw(2, 1088, 1920))
    message = info.value.message
    assert message.startswith("inputs image 2x3x1088x1920, trimap 2x2x1088x1920 are outside every")
    assert "max 4x512x512" in message and "max 1x1920x1920" in message
    assert "mattecli build-engine" in info.value.hint


@pytest.mark.parametrize(("height", "width"), [(40, 200), (64, 64), (100, 300), (250, 90), (8, 8)])
def test_every_batch_the_tiler_sends_fits_the_tile_profile(height: int, width: int) -> None:
    """The profile derivation agrees with the real tiler: small frames, edge tiles, short batches."""
    multiple, tile, batch = 8, 64, 3
    (profile,) = tile_profiles(tile, batch, multiple)
    ph, pw = padded_size(height, width, multiple)
    unknown = np.ones((ph, pw), dtype=bool)
    plan = plan_tiles(unknown, tile=tile, context=8, blend=8, multiple=multiple)
    assert len(plan) > 0
    for group in plan.batches(batch):
        assert select_profile((profile,), FBA_LAYOUT, _nchw(len(group), plan.tile_h, plan.tile_w)) == 0


# ---------------------------------------------------------------------------------------------
# Sidecar

A10G = ("10.14.1.48", "NVIDIA A10G", (8, 6))
H100 = ("11.4.0.106", "NVIDIA H100 80GB HBM3", (9, 0))


def _sidecar(**changes: object) -> EngineSidecar:
    version, gpu, cc = A10G
    base = EngineSidecar(
        tensorrt_version=version,
        gpu_name=gpu,
        compute_capability=cc,
        onnx_file="fba.onnx",
        onnx_sha256="ab" * 32,
        engine_sha256="cd" * 32,
        profiles=tile_profiles(512, 4, 8, max_size=1920),
        precision="fp16",
        contract=contract_for("fba-resnet50"),
        mattecli_version="0.1.0",
    )
    return replace(base, **changes)


def _check(sidecar: EngineSidecar, machine: tuple[str, str, tuple[int, int]], **kw: object) -> None:
    version, gpu, cc = machine
    check_sidecar(sidecar, trt_version=version, gpu_name=gpu, compute_capability=cc, **kw)  # type: ignore[arg-type]


def test_sidecar_round_trip(tmp_path: Path) -> None:
    engine = tmp_path / "fba.engine"
    original = _sidecar(version_compatible=True, hardware_compatibility="ampere+")
    written = write_sidecar(engine, original)
    assert written == sidecar_path(engine) == tmp_path / "fba.engine.json"
    data = json.loads(written.read_text())
    assert data["compute_capability"] == [8, 6]
    assert data["profiles"][1] == {"min": [1, 8, 8], "opt": [1, 1920, 1920], "max": [1, 1920, 1920]}
    assert data["contract"]["name"] == "fba-resnet50"
    back = read_sidecar(engine)
    assert back == original
    assert back.contract.size_multiple == 8 and back.contract.fusion == "fba"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_matching_machine_passes() -> None:
    _check(_sidecar(), A10G)
    _check(_sidecar(), A10G, onnx_sha256="ab" * 32)


def test_every_mismatch_is_named_with_the_rebuild_command() -> None:
    with pytest.raises(InputError) as info:
        _check(_sidecar(), H100, engine=Path("fba.engine"))
    err = info.value
    assert err.exit_code == EXIT_BAD_INPUT
    assert err.message.startswith(
        "engine built with TensorRT 10.14.1.48 on NVIDIA A10G (sm_86); "
        "this machine has TensorRT 11.4.0.106 on NVIDIA H100 80GB HBM3 (sm_90): "
    )
    assert (
        "TensorRT differs (10.14.1.48 vs 11.4.0.106) and the engine was not built --version-compatible"
        in err.message
    )
    assert "compute capability differs (sm_86 vs sm_90)" in err.message
    assert err.hint == "rebuild with `mattecli build-engine fba.onnx` on this machine"
    assert str(err).startswith("fba.engine: engine built with")


def test_same_compute_capability_but_another_gpu_model_is_refused() -> None:
    with pytest.raises(InputError) as info:
        _check(_sidecar(), ("10.14.1.48", "NVIDIA GeForce RTX 3090", (8, 6)))
    message = info.value.message
    assert "GPU model differs (NVIDIA A10G vs NVIDIA GeForce RTX 3090)" in message
    assert "TensorRT differs" not in message and "compute capability" not in message


def test_only_the_tensorrt_build_number_differs() -> None:
    with pytest.raises(InputError, match=r"TensorRT differs \(10.14.1.48 vs 10.14.1.50\)"):
        _check(_sidecar(), ("10.14.1.50", "NVIDIA A10G", (8, 6)))


def test_another_onnx_file_is_refused() -> None:
    with pytest.raises(InputError) as info:
        _check(_sidecar(), A10G, onnx_sha256="ef" * 32)
    assert (
        "built from another ONNX file (sha256 abababababab…, the given model has efefefefefef…)"
        in info.value.message
    )


@pytest.mark.parametrize(
    ("runtime", "loads"),
    [
        ("10.14.1.48", True),
        ("10.16.1.11", True),  # a later release of the same major
        ("11.4.0.106", True),  # 10 -> 11 is a documented cross-major pair
        ("10.13.0.35", False),  # older than the builder
        ("12.0.0.1", False),
    ],
)
def test_version_compatible_engines_load_on_later_releases(runtime: str, loads: bool) -> None:
    sidecar = _sidecar(version_compatible=True)
    machine = (runtime, "NVIDIA A10G", (8, 6))
    if loads:
        _check(sidecar, machine)
    else:
        with pytest.raises(InputError, match="loads only on a later release of the same major version"):
            _check(sidecar, machine)


def test_ampere_plus_engines_run_on_any_sm80_or_newer_gpu() -> None:
    sidecar = _sidecar(hardware_compatibility="ampere+")
    _check(sidecar, ("10.14.1.48", "NVIDIA H100 80GB HBM3", (9, 0)))
    _check(sidecar, ("10.14.1.48", "NVIDIA A100-SXM4-40GB", (8, 0)))
    with pytest.raises(InputError) as info:
        _check(sidecar, ("10.14.1.48", "Tesla T4", (7, 5)))
    assert "built for Ampere or newer GPUs (sm_80+), this GPU is sm_75" in info.value.message


def test_same_cc_engines_run_on_other_models_of_that_capability_only() -> None:
    sidecar = _sidecar(hardware_compatibility="same-cc")
    _check(sidecar, ("10.14.1.48", "NVIDIA GeForce RTX 3090", (8, 6)))
    with pytest.raises(InputError, match=r"compute capability differs \(sm_86 vs sm_89\)"):
        _check(sidecar, ("10.14.1.48", "NVIDIA L4", (8, 9)))


def test_missing_sidecar_is_an_input_error(tmp_path: Path) -> None:
    engine = tmp_path / "fba.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(InputError) as info:
        read_sidecar(engine)
    assert "no sidecar fba.engine.json beside this engine" in info.value.message
    assert "mattecli build-engine" in info.value.hint


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: "{not json", "cannot be read"),
        (lambda d: json.dumps([1, 2]), "not a JSON object"),
        (lambda d: json.dumps({**d, "format": 99}), "sidecar format 99"),
        (
            lambda d: json.dumps({k: v for k, v in d.items() if k != "gpu_name"}),
            "incomplete or damaged (KeyError",
        ),
        (lambda d: json.dumps({**d, "compute_capability": [8]}), "incomplete or damaged"),
        (lambda d: json.dumps({**d, "hardware_compatibility": "turing+"}), "unknown hardware_compatibility"),
        (lambda d: json.dumps({**d, "profiles": []}), "no optimisation profile"),
        (
            lambda d: json.dumps({**d, "contract": {"name": "x"}}),
            "invalid mattecli contract: field 'architecture' is missing",
        ),
    ],
)
def test_damaged_sidecar_is_an_input_error(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    engine = tmp_path / "fba.engine"
    write_sidecar(engine, _sidecar())
    path = sidecar_path(engine)
    path.write_text(mutate(json.loads(path.read_text())))
    with pytest.raises(InputError) as info:
        read_sidecar(engine)
    assert expected in str(info.value)


def test_engine_replaced_after_the_build_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "fba.engine"
    engine.write_bytes(b"the plan that was built")
    sidecar = _sidecar(engine_sha256=file_sha256(engine))
    verify_engine_file(engine, sidecar)
    engine.write_bytes(b"another plan")
    with pytest.raises(InputError, match="does not match its sidecar"):
        verify_engine_file(engine, sidecar)


def test_same_build_ignores_time_hash_and_mattecli_version() -> None:
    a = _sidecar()
    assert a.same_build(
        replace(a, created="2020-01-01T00:00:00+00:00", engine_sha256="00", mattecli_version="9")
    )
    assert not a.same_build(replace(a, profiles=tile_profiles(256, 4, 8)))
    assert not a.same_build(replace(a, precision="fp32"))


# ---------------------------------------------------------------------------------------------
# Opening an engine without TensorRT


def _engine_with_sidecar(tmp_path: Path) -> Path:
    engine = tmp_path / "fba.engine"
    engine.write_bytes(b"serialised plan")
    write_sidecar(engine, _sidecar(engine_sha256=file_sha256(engine)))
    return engine


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_open_trt_engine_without_tensorrt_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError) as info:
        open_engine("trt", _engine_with_sidecar(tmp_path), "cuda:0")
    err = info.value
    assert err.exit_code == EXIT_UNAVAILABLE
    assert err.message == "TensorRT is not installed"
    assert 'pip install -e ".[gpu]"' in err.hint and "NVIDIA" in err.hint


def test_open_trt_engine_on_the_cpu_is_an_option_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        open_engine("trt", _engine_with_sidecar(tmp_path), "cpu")
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "TensorRT runs on NVIDIA GPUs only, not on cpu" in info.value.message


def test_missing_tensorrt_is_reported_before_problems_with_the_engine_file(tmp_path: Path) -> None:
    """Without TensorRT no engine file can help, so that is what the user hears first."""
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "fba.engine"
    engine.write_bytes(b"serialised plan")  # no sidecar beside it
    for path in (engine, tmp_path / "missing.engine"):
        with pytest.raises(UnavailableError, match="TensorRT is not installed"):
            open_engine("trt", path, "cuda:0")


def test_cpu_only_torch_is_reported_as_unavailable() -> None:
    torch = pytest.importorskip("torch")
    if torch.version.cuda is not None:
        pytest.skip("this torch is a CUDA build")
    with pytest.raises(UnavailableError) as info:
        cuda_gpu(Device("cuda", 0))
    assert "is a CPU-only build; TensorRT needs a CUDA build of torch" in info.value.message
    assert info.value.exit_code == EXIT_UNAVAILABLE


# ---------------------------------------------------------------------------------------------
# What a default engine accepts


def _default_sidecar(**options: object) -> EngineSidecar:
    from mattecli.commands.build_engine import choose_profiles

    return _sidecar(profiles=choose_profiles(contract_for("fba-resnet50"), **options))  # type: ignore[arg-type]


def _fba_shapes(n: int, h: int, w: int) -> dict[str, tuple[int, int, int, int]]:
    return {"image": (n, 3, h, w), "trimap": (n, 2, h, w), "trimap_gauss": (n, 6, h, w)}


@pytest.mark.parametrize(
    ("width", "height"),
    [(800, 600), (640, 360), (1920, 1080), (1080, 1920), (512, 512), (37, 21)],
)
def test_default_engine_accepts_the_frames_run_sends_whole(width: int, height: int) -> None:
    """A photo or the demo clip runs whole (one call, padded to the size multiple): the default takes it."""
    sidecar = _default_sidecar()
    assert sidecar.accepts(_fba_shapes(1, *padded_size(height, width, 8)))


def test_default_engine_accepts_full_batches_of_tiles_and_refuses_larger_whole_frames() -> None:
    sidecar = _default_sidecar()
    assert sidecar.accepts(_fba_shapes(4, 512, 512)) and sidecar.accepts(_fba_shapes(3, 512, 200))
    assert not sidecar.accepts(_fba_shapes(1, *padded_size(2160, 3840, 8)))  # 4K runs tiled
    assert not sidecar.accepts(_fba_shapes(2, 1088, 1920))  # whole frames go one at a time
    assert not sidecar.accepts(_fba_shapes(5, 512, 512))


def test_accepts_needs_every_input_with_its_channels_and_one_shared_size() -> None:
    sidecar = _default_sidecar()
    shapes = _fba_shapes(1, 600, 800)
    assert not sidecar.accepts({k: v for k, v in shapes.items() if k != "trimap"})
    assert not sidecar.accepts({**shapes, "trimap": (1, 1, 600, 800)})
    assert not sidecar.accepts({**shapes, "trimap": (1, 2, 608, 800)})


def test_max_size_zero_builds_tiles_only_and_explicit_profiles_replace_the_default() -> None:
    tiles_only = _default_sidecar(max_size=0)
    assert len(tiles_only.profiles) == 1
    assert not tiles_only.accepts(_fba_shapes(1, 600, 800))
    explicit = _default_sidecar(explicit=("1x64x64", "1x256x256", "1x1024x1024"))
    assert explicit.profiles == (Profile((1, 64, 64), (1, 256, 256), (1, 1024, 1024)),)


def test_default_profiles_are_written_to_the_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "default.engine"
    write_sidecar(engine, _default_sidecar())
    profiles = json.loads(sidecar_path(engine).read_text())["profiles"]
    assert profiles == [
        {"min": [1, 8, 8], "opt": [4, 512, 512], "max": [4, 512, 512]},
        {"min": [1, 8, 8], "opt": [1, 1920, 1920], "max": [1, 1920, 1920]},
    ]
    assert read_sidecar(engine).accepts(_fba_shapes(1, 360, 640))


# ---------------------------------------------------------------------------------------------
# Band models: one call per frame, its coarse view and all of its band cells

BAND_MULTIPLE = BAND_MODEL.size_multiple  # 128


def choose_profiles_for_band(**options: object) -> tuple[Profile, ...]:
    """build-engine's profiles for the band contract with these options."""
    from mattecli.commands.build_engine import choose_profiles

    return choose_profiles(BAND_MODEL, **options)  # type: ignore[arg-type]


def _band_sidecar(**options: object) -> EngineSidecar:
    return _sidecar(profiles=choose_profiles_for_band(**options), contract=BAND_MODEL, onnx_file="band.onnx")


def _band_frame(
    shared_data: Path, width: int, height: int, name: str = "GT04"
) -> tuple[np.ndarray, np.ndarray]:
    """A real alphamatting photo and its trimap scaled to width x height (the trimap keeps its levels)."""
    import cv2

    from mattecli.media.imageio import read_image

    rgb = read_image(shared_data / "alphamatting" / "image" / f"{name}.png")
    trimap = cv2.imread(str(shared_data / "alphamatting" / "trimap" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    size = (width, height)
    return (
        cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
        cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST),
    )


def _band_feed_shapes(shared_data: Path, width: int, height: int) -> dict[str, tuple[int, ...]]:
    """The shapes of the one call the band predictor makes for a real frame of this size."""
    from mattecli.band_predictor import BandPlan
    from mattecli.inputs import FrameInputs

    rgb, trimap = _band_frame(shared_data, width, height)
    plan = BandPlan(FrameInputs(BAND_MODEL, rgb, trimap))
    feed = plan.feed()
    assert feed["band_index"].dtype == np.int64 and len(plan) > 0
    return {kind: array.shape for kind, array in feed.items()}


def _every_cell(shapes: dict[str, tuple[int, ...]], width: int, height: int) -> dict[str, tuple[int, ...]]:
    """``shapes`` with the cell count of `--band-cells all` (BandPlan's cells="all") for that frame.

    The count is what BandPlan plans; its patches (310 MB at 4K) are not built.
    """
    from mattecli.band_inputs import all_cells

    cells = len(all_cells(height, width))
    return {**shapes, "band_patches": (cells, *shapes["band_patches"][1:]), "band_index": (cells, 64)}


def test_default_band_profile_gives_every_input_an_ordered_box() -> None:
    (profile,) = choose_profiles_for_band()
    # cells x padded frame: 1..every cell of 4096x2176, tuned for a tenth of a padded 1080p frame's cells
    assert profile == Profile(min=(1, 128, 128), opt=(864, 1152, 1920), max=(34816, 2176, 4096))
    assert profile == band_profile(BAND_MULTIPLE)
    boxes = {name: input_box(profile, kind) for name, kind in BAND_MODEL.inputs}
    assert boxes == {
        "band_coarse": ((1, 11, 32, 32), (1, 11, 288, 480), (1, 11, 544, 1024)),
        "band_patches": ((1, 5, 22, 22), (864, 5, 22, 22), (34816, 5, 22, 22)),
        "band_index": ((1, 64), (864, 64), (34816, 64)),
    }
    for low, opt, high in boxes.values():
        assert all(lo <= mid <= hi for lo, mid, hi in zip(low, opt, high, strict=True))


@pytest.mark.parametrize(("width", "height"), [(800, 600), (1920, 1080), (3840, 2160)])
def test_default_band_engine_accepts_what_the_pipeline_sends(
    shared_data: Path, width: int, height: int
) -> None:
    """A photo, a 1080p and a 4K frame: the band's cells, and every cell (`--band-cells all`)."""
    sidecar = _band_sidecar()
    band = _band_feed_shapes(shared_data, width, height)
    assert sidecar.accepts(band)
    assert select_profile(sidecar.profiles, sidecar.layouts(), band) == 0
    every = _every_cell(band, width, height)
    assert sidecar.accepts(every)


def test_band_engine_refuses_more_cells_than_its_max_and_frames_outside_its_box(shared_data: Path) -> None:
    hd = _band_feed_shapes(shared_data, 1920, 1080)
    cells = hd["band_patches"][0]
    assert 100 < cells < 8160  # the band, not the whole frame
    capped = _band_sidecar(max_cells=cells - 1)
    assert capped.profiles[0].max == (cells - 1, 2176, 4096)
    assert not capped.accepts(hd)
    assert _band_sidecar(max_cells=cells).accepts(hd)
    with pytest.raises(InputError) as info:
        select_profile(capped.profiles, capped.layouts(), hd)
    assert f"band_patches {cells}x5x22x22" in info.value.message
    assert "--max-cells" in info.value.hint

    default = _band_sidecar()
    over = default.profiles[0].max[0] + 1
    assert not default.accepts({**hd, "band_patches": (over, 5, 22, 22), "band_index": (over, 64)})
    # a portrait 4K frame (2176 x 3840 padded) is outside the landscape default; --max-size 3840 takes it
    portrait = {**hd, "band_coarse": (1, 11, 3840 // 4, 2176 // 4)}
    assert not default.accepts(portrait)
    assert _band_sidecar(max_size=3840).accepts(portrait)


def test_band_feeds_must_agree_with_themselves_and_with_what_mattecli_sends(shared_data: Path) -> None:
    sidecar = _band_sidecar()
    photo = _band_feed_shapes(shared_data, 800, 600)
    cells = photo["band_patches"][0]
    assert photo == {
        "band_coarse": (1, 11, 640 // 4, 896 // 4),  # 800 x 600 padded to 896 x 640
        "band_patches": (cells, 5, 22, 22),
        "band_index": (cells, 64),
    }
    assert not sidecar.accepts({**photo, "band_index": (cells + 1, 64)})  # patches and index disagree
    assert not sidecar.accepts({**photo, "band_patches": (cells, 5, 24, 24)})  # another window
    assert not sidecar.accepts({**photo, "band_coarse": (2, 11, 160, 224)})  # one frame per call
    assert not sidecar.accepts({k: v for k, v in photo.items() if k != "band_index"})


def test_band_profile_options() -> None:
    (square,) = choose_profiles_for_band(max_size=1920)
    assert square == Profile(min=(1, 128, 128), opt=(864, 1152, 1920), max=(14400, 1920, 1920))
    (small,) = choose_profiles_for_band(max_size=600, max_cells=50)
    assert small == Profile(min=(1, 128, 128), opt=(50, 640, 640), max=(50, 640, 640))
    (explicit,) = choose_profiles_for_band(explicit=("1x128x128", "500x1152x1920", "9000x1152x1920"))
    assert explicit == Profile((1, 128, 128), (500, 1152, 1920), (9000, 1152, 1920))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tile": 512}, "--tile and --batch are for tiled models; bandmatte-lite0 is a band model"),
        ({"batch": 2}, "--tile and --batch are for tiled models"),
        ({"max_size": 0}, "--max-size 0 must be a positive frame side"),
        ({"max_cells": 0}, "--max-cells 0 must be at least 1"),
        ({"explicit": ("1x128x128", "9x128x128", "9x128x128"), "max_cells": 9}, "replace --tile, --batch"),
        ({"explicit": ("1x128x128", "9x128x128", "9x1080x1920")}, "height 1080 not a multiple of 128"),
    ],
)
def test_band_profile_mistakes(options: dict[str, object], expected: str) -> None:
    with pytest.raises(InputError) as info:
        choose_profiles_for_band(**options)
    assert expected in info.value.message


def test_max_cells_is_refused_for_tiled_models() -> None:
    from mattecli.commands.build_engine import choose_profiles

    with pytest.raises(InputError, match="--max-cells is for band models; fba-resnet50 runs tiles"):
        choose_profiles(contract_for("fba-resnet50"), max_cells=100)


def test_band_sidecar_round_trip(tmp_path: Path, shared_data: Path) -> None:
    engine = tmp_path / "band.engine"
    original = _band_sidecar(max_cells=20000)
    write_sidecar(engine, original)
    data = json.loads(sidecar_path(engine).read_text())
    assert data["format"] == 2 and "input_channels" not in data
    assert data["profiles"] == [{"min": [1, 128, 128], "opt": [864, 1152, 1920], "max": [20000, 2176, 4096]}]
    assert data["contract"]["architecture"] == "band"
    back = read_sidecar(engine)
    assert back == original
    assert back.layouts() == (
        InputLayout("band_coarse", "band_coarse"),
        InputLayout("band_patches", "band_patches"),
        InputLayout("band_index", "band_index"),
    )
    assert back.accepts(_band_feed_shapes(shared_data, 1920, 1080))


def test_format_1_sidecars_are_refused_with_the_rebuild_command(tmp_path: Path) -> None:
    engine = tmp_path / "fba.engine"
    write_sidecar(engine, _sidecar())
    path = sidecar_path(engine)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": 1, "input_channels": {"image": 3}}))
    with pytest.raises(InputError) as info:
        read_sidecar(engine)
    assert "sidecar format 1 is not the one this mattecli reads (2)" in info.value.message
    assert "mattecli build-engine" in info.value.hint
