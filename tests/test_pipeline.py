"""The frame pipeline with small real ONNX networks: outputs, counts, tiling, resume, failures, threads,
and band-only fusion against a whole-frame reference."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.base import open_engine
from mattecli.errors import EXIT_INTERNAL, InputError, InternalError
from mattecli.frame_matter import FrameMatter
from mattecli.fusion import fba_fusion, impose_known_colours, impose_trimap
from mattecli.inputs import build_inputs
from mattecli.media.frame import Frame, to_float
from mattecli.media.imageio import read_gray, write_image
from mattecli.media.sinks import OutputSpec
from mattecli.media.sources import Source, open_source
from mattecli.models import METADATA_KEY, ModelContract
from mattecli.pipeline import run_pipeline
from mattecli.run_inputs import expand_inputs
from mattecli.run_options import RunOptions, TileOptions
from mattecli.summary import STAGES, InputSummary, Reporter, StageClock
from mattecli.writer_thread import BackgroundWriter

FBA_LIKE = ModelContract(
    name="fba-like-test",
    architecture="fba",
    paper="test network with FBA's inputs and outputs: two 3x3 convolutions",
    inputs=(("image", "image"), ("trimap", "trimap_2ch"), ("trimap_gauss", "trimap_gauss6")),
    outputs=(("alpha", "alpha"), ("foreground", "foreground"), ("background", "background")),
    size_multiple=8,
    fusion="fba",
)
IMAGE_ONLY = ModelContract(
    name="image-only-test",
    architecture="gfm",
    paper="test network without trimap: one 3x3 convolution",
    inputs=(("image", "image"),),
    outputs=(("alpha", "alpha"),),
    size_multiple=8,
    needs_trimap=False,
)
HEIGHT, WIDTH = 44, 60  # not multiples of 8: padding is exercised
SEQUENCE = range(1, 7)


def _conv(
    nodes: list, inits: list, rng: np.random.Generator, src: str, dst: str, c_in: int, c_out: int
) -> None:
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(c_out).astype(np.float32) * 0.1
    inits += [numpy_helper.from_array(w, f"{dst}_w"), numpy_helper.from_array(b, f"{dst}_b")]
    nodes.append(helper.make_node("Conv", [src, f"{dst}_w", f"{dst}_b"], [dst], pads=[1, 1, 1, 1]))


def _save(
    path: Path,
    contract: ModelContract,
    nodes: list,
    inits: list,
    channels: dict[str, int],
    size: tuple[int, int] | None = None,
) -> Path:
    """``size``: a static height and width (as a TensorRT engine built for one tile size has)."""
    h, w = size or ("h", "w")
    value = lambda name, c: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", c, h, w])  # noqa: E731
    inputs = [value(name, channels[name]) for name, _ in contract.inputs]
    outputs = [value(name, channels[name]) for name, _ in contract.outputs]
    model = helper.make_model(
        helper.make_graph(nodes, contract.name, inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", 21)],
    )
    model.ir_version = 10
    helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    onnx.save(model, path)
    return path


def fba_like_onnx(path: Path, *, own_colour: bool = False, size: tuple[int, int] | None = None) -> Path:
    """alpha = sigmoid(conv(relu(conv(image, trimap, gauss)))), foreground = image, background = 1 - image.

    ``own_colour``: foreground = sigmoid(conv(relu(conv(...)))) instead, a colour of its own even on
    the definite foreground. Receptive-field radius 2, so tiles with 8 pixels of context stitch
    exactly. ``size``: inputs of that static height and width only (the weights stay the same)."""
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Concat", ["image", "trimap", "trimap_gauss"], ["x"], axis=1)]
    inits: list = []
    _conv(nodes, inits, rng, "x", "c0", 11, 4)
    nodes.append(helper.make_node("Relu", ["c0"], ["r0"]))
    _conv(nodes, inits, rng, "r0", "c1", 4, 1)
    nodes.append(helper.make_node("Sigmoid", ["c1"], ["alpha"]))
    if own_colour:
        _conv(nodes, inits, rng, "r0", "c2", 4, 3)
        nodes.append(helper.make_node("Sigmoid", ["c2"], ["foreground"]))
    else:
        nodes.append(helper.make_node("Identity", ["image"], ["foreground"]))
    inits.append(numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "one"))
    nodes.append(helper.make_node("Sub", ["one", "image"], ["background"]))
    channels = {"image": 3, "trimap": 2, "trimap_gauss": 6, "alpha": 1, "foreground": 3, "background": 3}
    return _save(path, FBA_LIKE, nodes, inits, channels, size)


def image_only_onnx(path: Path) -> Path:
    rng = np.random.default_rng(12)
    nodes: list = []
    inits: list = []
    _conv(nodes, inits, rng, "image", "c0", 3, 1)
    nodes.append(helper.make_node("Sigmoid", ["c0"], ["alpha"]))
    return _save(path, IMAGE_ONLY, nodes, inits, {"image": 3, "alpha": 1})


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


def _trimap(shift: int) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    r = np.hypot(yy - HEIGHT / 2, xx - WIDTH / 2 - shift)
    return np.where(r < 10, 255, np.where(r < 16, 128, 0)).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("models")
    fba = open_engine("ort", fba_like_onnx(folder / "fba_like.onnx"), "cpu", threads=1)
    plain = open_engine("ort", image_only_onnx(folder / "image_only.onnx"), "cpu", threads=1)
    coloured = open_engine("ort", fba_like_onnx(folder / "coloured.onnx", own_colour=True), "cpu", threads=1)
    tile_only = open_engine("ort", fba_like_onnx(folder / "tile32.onnx", size=(32, 32)), "cpu", threads=1)
    yield {"fba": fba, "image_only": plain, "coloured": coloured, "tile_only": tile_only}
    for engine in (fba, plain, coloured, tile_only):
        engine.close()


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """shot/shot.0001-0006.png (a sequence), stills/a.png and b.png, trimaps/ for all of them."""
    (tmp_path / "shot").mkdir()
    (tmp_path / "stills").mkdir()
    for n in SEQUENCE:
        write_image(tmp_path / "shot" / f"shot.{n:04d}.png", _picture(n))
        write_image(tmp_path / "trimaps" / f"shot.{n:04d}.png", _trimap(n))
    for i, name in enumerate("ab"):
        write_image(tmp_path / "stills" / f"{name}.png", _picture(20 + i))
        write_image(tmp_path / "trimaps" / f"{name}.png", _trimap(-3 * i))
    return tmp_path


class Events(Reporter):
    def __init__(self) -> None:
        self.advanced = 0
        self.started: list[tuple[str, int | None, int]] = []
        self.finished: list[InputSummary] = []
        self.warnings: list[str] = []

    def input_started(self, item: InputSummary, total: int | None, done: int) -> None:
        self.started.append((Path(item.path).name, total, done))

    def advance(self) -> None:
        self.advanced += 1

    def input_finished(self, item: InputSummary) -> None:
        self.finished.append(item)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def _mtimes(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_sequence_and_stills_are_matted_with_known_regions_exact(models: dict, data: Path) -> None:
    out = data / "out"
    events = Events()
    summary = run_pipeline(
        [str(data / "shot"), str(data / "stills")],
        models["fba"],
        OutputSpec(out, alpha="png16", foreground="png8"),
        trimap_spec=data / "trimaps",
        reporter=events,
    )
    assert not summary.failed
    seq, stills = summary.inputs
    assert (seq.kind, seq.frames_total, seq.frames_written, seq.frames_skipped) == ("sequence", 6, 6, 0)
    assert (stills.kind, stills.frames_total, stills.frames_written) == ("stills", 2, 2)
    assert events.advanced == 8 and [s.path for s in events.finished] == [seq.path, stills.path]
    assert events.started == [("shot", 6, 0), ("stills", 2, 0)]
    names = sorted(p.name for p in (out / "alpha").iterdir())
    assert names == ["a.png", "b.png"] + [f"shot.{n:06d}.png" for n in SEQUENCE]
    for n in SEQUENCE:
        alpha = read_gray(out / "alpha" / f"shot.{n:06d}.png")
        assert alpha.dtype == np.uint16 and alpha.shape == (HEIGHT, WIDTH)
        trimap = _trimap(n)
        assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 65535).all()
        unknown = alpha[trimap == 128]
        assert 0 < unknown.min() < unknown.max() < 65535  # the network's (fused) values
        fg = cv2.imread(str(out / "fg" / f"shot.{n:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert fg.shape == (HEIGHT, WIDTH, 4) and fg.dtype == np.uint8
    totals = summary.to_json()["totals"]
    assert (totals["frames_total"], totals["frames_written"], totals["failed"]) == (8, 8, 0)
    for item in summary.to_json()["inputs"]:
        assert set(item["seconds"]) == set(STAGES)
        assert item["seconds"]["engine"] > 0 and item["seconds"]["write"] > 0 and item["fps"] > 0


def test_tiled_inference_matches_whole_frames_for_a_local_network(models: dict, data: Path) -> None:
    outputs = {}
    for label, tiles in (
        ("whole", TileOptions(size=None)),
        ("tiled", TileOptions(32, context=8, blend=4, batch=1)),
    ):
        summary = run_pipeline(
            [str(data / "stills" / "a.png")],
            models["fba"],
            OutputSpec(data / label, alpha="exr"),
            trimap_spec=data / "trimaps",
            options=RunOptions(tiles=tiles, fusion=False),
        )
        assert summary.inputs[0].frames_written == 1
        outputs[label] = read_gray(data / label / "alpha" / "a.exr")
    np.testing.assert_allclose(outputs["tiled"], outputs["whole"], atol=1e-5)
    assert np.abs(outputs["whole"] - (_trimap(0) == 255)).max() > 0.05  # the network did something


def test_frame_ranges_and_resume_skip_complete_frames_without_rewriting_them(
    models: dict, data: Path
) -> None:
    out = data / "out"
    spec = OutputSpec(out)
    shot = [str(data / "shot")]
    first = run_pipeline(
        shot, models["fba"], spec, trimap_spec=data / "trimaps", options=RunOptions(start=2, end=6, every=2)
    )
    assert (first.inputs[0].frames_total, first.inputs[0].frames_written) == (3, 3)
    assert sorted(p.name for p in (out / "alpha").iterdir()) == [f"shot.{n:06d}.png" for n in (2, 4, 6)]
    before = _mtimes(out / "alpha")
    time.sleep(0.01)
    events = Events()
    again = run_pipeline(
        shot,
        models["fba"],
        spec,
        trimap_spec=data / "trimaps",
        options=RunOptions(resume=True),
        reporter=events,
    )
    item = again.inputs[0]
    assert (item.frames_total, item.frames_written, item.frames_skipped) == (6, 3, 3)
    assert events.started == [("shot", 6, 0)]  # frame 1 is missing, so decoding starts there
    after = _mtimes(out / "alpha")
    assert len(after) == 6
    assert {name: after[name] for name in before} == before  # same inode, same mtime: not rewritten
    for n in (5, 6):  # a chunk killed near its end: the complete frames before it are not even decoded
        (out / "alpha" / f"shot.{n:06d}.png").unlink()
    events = Events()
    tail = run_pipeline(
        shot,
        models["fba"],
        spec,
        trimap_spec=data / "trimaps",
        options=RunOptions(resume=True),
        reporter=events,
    )
    assert (tail.inputs[0].frames_written, tail.inputs[0].frames_skipped) == (2, 4)
    assert events.started == [("shot", 6, 4)]
    after = _mtimes(out / "alpha")
    done = run_pipeline(
        shot, models["fba"], spec, trimap_spec=data / "trimaps", options=RunOptions(resume=True)
    )
    assert (done.inputs[0].frames_written, done.inputs[0].frames_skipped) == (0, 6)
    assert _mtimes(out / "alpha") == after


def test_a_failing_input_is_recorded_and_the_others_still_run(models: dict, data: Path) -> None:
    bad = data / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    wrong = data / "trimaps" / "shot.0004.png"
    write_image(wrong, np.zeros((HEIGHT + 2, WIDTH), np.uint8))
    summary = run_pipeline(
        [str(bad), str(data / "shot"), str(data / "stills")],
        models["fba"],
        OutputSpec(data / "out"),
        trimap_spec=data / "trimaps",
    )
    broken, shot, stills = summary.inputs
    assert broken.failed and broken.kind is None and str(bad) in (broken.error or "")
    assert shot.failed and "frame 4" in (shot.error or "") and "shot.0004.png" in (shot.error or "")
    assert shot.frames_written == 3  # frames 1-3 were written before frame 4 failed
    assert not stills.failed and stills.frames_written == 2
    assert len(summary.failed) == 2 and summary.to_json()["totals"]["failed"] == 2
    fixed = run_pipeline(
        [str(data / "shot")],
        models["fba"],
        OutputSpec(data / "fixed"),
        trimap_spec=data / "trimaps",
        options=RunOptions(resize_trimaps=True),
    )
    assert fixed.inputs[0].frames_written == 6


def test_whole_run_problems_are_refused_before_any_output_exists(models: dict, data: Path) -> None:
    out = data / "out"
    (data / "trimaps" / "shot.0003.png").unlink()
    (data / "trimaps" / "b.png").unlink()
    with pytest.raises(InputError, match=r"no trimap for 2 of 8 frames: shot \(frame 3\), b \(frame 1\)"):
        run_pipeline(
            [str(data / "shot"), str(data / "stills")],
            models["fba"],
            OutputSpec(out),
            trimap_spec=data / "trimaps",
        )
    assert not out.exists()
    (data / "other").mkdir()
    write_image(data / "other" / "a.png", _picture(30))
    with pytest.raises(InputError, match="would both write"):
        run_pipeline(
            [str(data / "stills" / "a.png"), str(data / "other" / "a.png")],
            models["fba"],
            OutputSpec(out),
            trimap_spec=data / "trimaps",
        )
    refusals = [
        (models["fba"], OutputSpec(out, video="prores"), RunOptions(resume=True), "cannot be appended"),
        (models["fba"], OutputSpec(out), RunOptions(start=5, end=2), "ends"),
        (
            models["fba"],
            OutputSpec(out),
            RunOptions(tiles=TileOptions(64, context=30, blend=8)),
            "tiling options",
        ),
        (models["image_only"], OutputSpec(out, foreground="png8"), RunOptions(), "gives no foreground"),
        (models["image_only"], OutputSpec(out), RunOptions(fusion=True), "FBA fusion"),
    ]
    for engine, spec, options, message in refusals:
        with pytest.raises(InputError, match=message):
            run_pipeline([str(data / "shot")], engine, spec, trimap_spec=data / "trimaps", options=options)
    with pytest.raises(InputError, match="needs a trimap"):
        run_pipeline([str(data / "shot")], models["fba"], OutputSpec(out))
    with pytest.raises(InputError, match="photos cannot be written as a video"):
        run_pipeline(
            [str(data / "stills")], models["fba"], OutputSpec(out, video="ffv1"), trimap_spec=data / "trimaps"
        )
    assert not out.exists()


def test_a_model_without_trimap_computes_every_pixel(models: dict, data: Path) -> None:
    summary = run_pipeline(
        [str(data / "stills")], models["image_only"], OutputSpec(data / "out", alpha="exr")
    )
    assert summary.inputs[0].frames_written == 2 and summary.run["fusion"] is False
    alpha = read_gray(data / "out" / "alpha" / "a.exr")
    assert alpha.shape == (HEIGHT, WIDTH) and alpha.min() > 0 and alpha.max() < 1


def test_anti_aliased_trimaps_are_quantised_with_a_warning(models: dict, data: Path) -> None:
    soft = cv2.GaussianBlur(_trimap(0), (5, 5), 0)
    write_image(data / "trimaps" / "a.png", soft)
    events = Events()
    summary = run_pipeline(
        [str(data / "stills")],
        models["fba"],
        OutputSpec(data / "out"),
        trimap_spec=data / "trimaps",
        reporter=events,
    )
    assert not summary.failed
    assert len(events.warnings) == 1 and "1 trimap(s)" in events.warnings[0] and "a.png" in events.warnings[0]
    alpha = read_gray(data / "out" / "alpha" / "a.png")
    assert (alpha[soft > 170] == 65535).all() and (alpha[soft < 85] == 0).all()


def test_quoted_globs_expand_to_videos_but_image_globs_stay_one_input(data: Path) -> None:
    for name in ("b.mov", "a.mp4"):
        (data / name).write_bytes(b"")
    assert expand_inputs([str(data / "*.m*")]) == [str(data / "a.mp4"), str(data / "b.mov")]
    assert expand_inputs([str(data / "shot" / "shot.*.png")]) == [str(data / "shot" / "shot.*.png")]
    assert expand_inputs([str(data / "nothing*.mp4")]) == [str(data / "nothing*.mp4")]


def test_the_writer_queue_is_bounded_and_its_failures_reach_the_submitter() -> None:
    release = threading.Event()
    written: list[int] = []

    def slow(n: int) -> None:
        release.wait(5)
        written.append(n)

    writer = BackgroundWriter(slow, maxsize=2)
    submitted: list[int] = []

    def submit_all() -> None:
        for n in range(6):
            writer.submit(n)
            submitted.append(n)

    feeder = threading.Thread(target=submit_all)
    feeder.start()
    deadline = time.monotonic() + 5
    while len(submitted) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(submitted) == 3  # one item being written, two queued: the next submit waits
    release.set()
    feeder.join(5)
    writer.close()
    assert written == list(range(6))

    def failing(n: int) -> None:
        if n == 1:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), BackgroundWriter(failing, maxsize=1) as broken:
        for n in range(50):  # with one slot, the submitter cannot get far past the failing item
            broken.submit(n)


@pytest.mark.parametrize(("error", "kept"), [(ValueError, [0, 1, 2]), (KeyboardInterrupt, [0])])
def test_a_failed_frame_keeps_the_queued_frames_but_an_interrupt_drops_them(
    error: type[BaseException], kept: list[int]
) -> None:
    release = threading.Event()
    written: list[int] = []

    def slow(n: int) -> None:
        release.wait(5)
        written.append(n)

    with pytest.raises(error), BackgroundWriter(slow, maxsize=2) as writer:
        for n in range(3):
            writer.submit(n)
        threading.Timer(0.1, release.set).start()
        raise error
    assert written == kept


def test_stage_clock_charges_nested_time_to_the_inner_stage_only(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("mattecli.summary.time.perf_counter", lambda: now[0])
    clock = StageClock()
    with clock.measure("engine"):
        now[0] += 2.0
        with clock.measure("preprocess"):
            now[0] += 5.0
        now[0] += 1.0
        with clock.measure("fusion"):
            now[0] += 0.5
    assert clock.snapshot() == {"decode": 0.0, "preprocess": 5.0, "engine": 3.0, "fusion": 0.5, "write": 0.0}
    with pytest.raises(ValueError, match="unknown stage"), clock.measure("nap"):
        pass


def _whole_frame_reference(
    engine: object, picture: np.ndarray, trimap: np.ndarray, fusion: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The frame as a whole-frame pipeline computes it: every pixel through the network and fusion,
    then the trimap's known alpha and, with fusion, the image's colour where alpha is 1."""
    image = np.clip(to_float(picture), 0.0, 1.0)
    inputs = build_inputs(engine.contract, image, trimap)  # type: ignore[attr-defined]
    outputs = engine.infer({kind: a[None] for kind, a in inputs.arrays.items()})  # type: ignore[attr-defined]
    alpha = inputs.crop(outputs["alpha"][0])[0]
    fg = inputs.crop(outputs["foreground"][0]).transpose(1, 2, 0)
    bg = inputs.crop(outputs["background"][0]).transpose(1, 2, 0)
    if fusion:
        alpha, fg, bg = fba_fusion(image, alpha, fg, bg)
    alpha = impose_trimap(alpha, trimap)
    if fusion:
        fg, _ = impose_known_colours(image, alpha, fg, bg)
    return alpha, fg


@pytest.mark.parametrize("fusion", [True, False])
@pytest.mark.parametrize("tiles", [TileOptions(size=None), TileOptions(32, context=8, blend=4, batch=2)])
def test_fusing_only_the_pixels_the_network_decides_equals_whole_frame_fusion(
    models: dict, fusion: bool, tiles: TileOptions
) -> None:
    engine = models["coloured"]
    for seed, shift in ((1, 0), (2, 5)):
        picture, trimap = _picture(seed), _trimap(shift)
        expected_alpha, expected_fg = _whole_frame_reference(engine, picture, trimap, fusion)
        frame = Frame(index=seed, name="f", image=picture, source=Path("f.png"))
        for foreground in (False, True):
            matter = FrameMatter(
                engine, tiles=tiles, tta="none", fusion=fusion, want_foreground=foreground, clock=StageClock()
            )
            alpha, fg = matter(frame, trimap)
            assert alpha.shape == (HEIGHT, WIDTH) and alpha.dtype == np.float32 and alpha.flags.c_contiguous
            np.testing.assert_allclose(alpha, expected_alpha, atol=1e-5, rtol=0)
            assert (fg is not None) == foreground
            if fg is not None:
                assert fg.shape == (HEIGHT, WIDTH, 3) and fg.flags.c_contiguous
                np.testing.assert_allclose(fg, expected_fg, atol=1e-5, rtol=0)
    # The check has teeth: fusion and the network really move the unknown band.
    band = trimap == 128
    assert np.abs(expected_alpha[band] - 0.5).max() > 0.05
    if fusion:
        plain_alpha, _ = _whole_frame_reference(engine, picture, trimap, False)
        assert np.abs(plain_alpha - expected_alpha)[band].max() > 1e-3


def test_work_buffers_stay_the_same_from_frame_to_frame(models: dict) -> None:
    matter = FrameMatter(
        models["fba"],
        tiles=TileOptions(32, context=8, blend=4, batch=2),
        tta="none",
        fusion=True,
        want_foreground=True,
        clock=StageClock(),
    )
    held = []
    for n in SEQUENCE:
        frame = Frame(index=n, name="shot", image=_picture(n), source=Path("shot.png"))
        matter(frame, _trimap(n))
        held.append(matter.scratch.nbytes)
    assert held[0] > 0 and len(set(held[1:])) == 1 and held[-1] <= 1.2 * held[0]
    seconds = matter.clock.snapshot()
    assert seconds["engine"] > 0 and seconds["preprocess"] > 0 and seconds["fusion"] > 0


def test_a_frame_that_fits_one_call_runs_whole_only_if_the_engine_accepts_its_shape(models: dict) -> None:
    """A 44x60 frame (48x64 padded) fits in one call of four 32x32 tiles, so it would run whole; an
    engine built for 32x32 inputs only (like a TensorRT engine's single profile) must get tiles."""
    tiles = TileOptions(32, context=8, blend=4, batch=4)
    picture, trimap = _picture(3), _trimap(2)
    frame = Frame(index=0, name="f", image=picture, source=Path("f.png"))
    results = {}
    for name in ("fba", "tile_only"):
        matter = FrameMatter(
            models[name], tiles=tiles, tta="none", fusion=True, want_foreground=True, clock=StageClock()
        )
        results[name] = matter(frame, trimap)
    expected_alpha, expected_fg = _whole_frame_reference(models["fba"], picture, trimap, True)
    for alpha, fg in results.values():  # the same weights: whole and tiled agree for this local network
        np.testing.assert_allclose(alpha, expected_alpha, atol=1e-5, rtol=0)
        np.testing.assert_allclose(fg, expected_fg, atol=1e-5, rtol=0)


class _BuggyReporter(Reporter):
    """A reporter with a programming error: the kind of failure that no input explains."""

    def input_started(self, item: InputSummary, total: int | None, done: int) -> None:
        raise KeyError("progress task")


def test_a_bug_stops_the_run_with_its_traceback_and_exit_code_70_not_as_a_bad_input(
    models: dict, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InternalError) as caught:
        run_pipeline(
            [str(data / "stills"), str(data / "shot")],
            models["fba"],
            OutputSpec(data / "out"),
            trimap_spec=data / "trimaps",
            reporter=_BuggyReporter(),
        )
    assert caught.value.exit_code == EXIT_INTERNAL == 70
    assert isinstance(caught.value.__cause__, KeyError)
    assert str(caught.value).startswith(f"{data / 'stills'}: internal error: KeyError: 'progress task'")
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "input_started" in err
    assert not (data / "out" / "alpha").exists()  # the run stopped at the first input


@pytest.mark.parametrize("debug", [False, True])
def test_an_input_failure_is_one_line_and_debug_adds_its_traceback(
    models: dict, data: Path, capsys: pytest.CaptureFixture[str], debug: bool
) -> None:
    write_image(data / "trimaps" / "shot.0004.png", np.zeros((HEIGHT + 2, WIDTH), np.uint8))
    summary = run_pipeline(
        [str(data / "shot"), str(data / "stills")],
        models["fba"],
        OutputSpec(data / "out"),
        trimap_spec=data / "trimaps",
        debug=debug,
    )
    shot, stills = summary.inputs
    assert shot.failed and "\n" not in (shot.error or "") and "frame 4" in (shot.error or "")
    assert not stills.failed and stills.frames_written == 2  # the batch went on
    err = capsys.readouterr().err
    assert ("Traceback (most recent call last)" in err) == debug


def test_run_debug_flag_shows_the_traceback_of_a_bad_trimap(data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mattecli.cli import app

    model = fba_like_onnx(tmp_path / "fba_like.onnx")
    write_image(data / "trimaps" / "shot.0004.png", np.zeros((HEIGHT + 2, WIDTH), np.uint8))
    for extra, traceback_shown in (([], False), (["--debug"], True)):
        out = tmp_path / f"out{len(extra)}"
        args = ["run", str(data / "shot"), "-t", str(data / "trimaps"), "-o", str(out), "-m", str(model)]
        result = CliRunner().invoke(app, args + extra)
        assert result.exit_code == 1, result.stderr
        assert "shot.0004.png" in result.stderr
        assert ("Traceback (most recent call last)" in result.stderr) == traceback_shown


class _SlowSource(Source):
    """A real image sequence whose third frame takes a while to decode; it records whether it was
    closed while that frame was being decoded (in the decoder thread)."""

    def __init__(self, real: Source) -> None:
        super().__init__(real.path, real.info)
        self.real = real
        self.decoding = False
        self.closed_while_decoding: bool | None = None

    def frame_ids(self) -> list[tuple[str, int]]:
        return self.real.frame_ids()

    def _frames(self, start: int | None, end: int | None, every: int) -> Generator[Frame, None, None]:
        for frame in self.real.frames(start, end, every, prefetch=0):
            if frame.index == 3:
                self.decoding = True
                time.sleep(0.5)  # a large EXR, a slow network disk
                self.decoding = False
            yield frame

    def close(self) -> None:
        if self.closed_while_decoding is None:
            self.closed_while_decoding = self.decoding
        super().close()
        self.real.close()


def test_the_source_is_closed_only_after_the_decoder_thread_has_left_it(
    models: dict, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frame 2 fails while the decoder thread is inside frame 3, longer than the prefetcher waits
    for its thread (shortened here from 5 s): the source must not be closed under the decoder."""
    monkeypatch.setattr("mattecli.media.prefetch._JOIN_S", 0.05)
    opened: list[_SlowSource] = []

    def open_slow(spec: str) -> Source:
        opened.append(_SlowSource(open_source(spec)))
        return opened[0]

    monkeypatch.setattr("mattecli.run_inputs.open_source", open_slow)
    write_image(data / "trimaps" / "shot.0002.png", np.zeros((HEIGHT + 2, WIDTH), np.uint8))
    summary = run_pipeline(
        [str(data / "shot")], models["fba"], OutputSpec(data / "out"), trimap_spec=data / "trimaps"
    )
    (shot,) = summary.inputs
    assert shot.failed and "frame 2" in (shot.error or "") and shot.frames_written == 1
    assert opened[0].closed_while_decoding is False
    assert not [t for t in threading.enumerate() if t.name == "mattecli-prefetch"]
