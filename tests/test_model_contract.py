"""The model contract is checked when a model loads: every bad field is one InputError naming file and field.

The files are real ONNX graphs (three convolutions from ``onnx_nets``) whose metadata is edited the
way a hand-edited or foreign file would be; each is loaded by ``read_onnx_contract`` (run, info,
bench), by the ONNX Runtime engine and by ``build-engine``'s checks, and through ``mattecli run``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from conftest import LOCAL_CONTRACT
from onnx_nets import conv_onnx
from typer.testing import CliRunner

from engines.base import open_engine
from engines.trt_build import inspect_onnx
from mattecli.cli import app
from mattecli.errors import EXIT_BAD_INPUT, InputError
from mattecli.models import METADATA_KEY, ModelContract, contract_for, read_onnx_contract

Edit = Callable[[dict[str, object]], None]


def _set(key: str, value: object) -> Edit:
    return lambda data: data.__setitem__(key, value)


def _drop(key: str) -> Edit:
    return lambda data: data.pop(key)


def with_metadata(path: Path, text: str) -> Path:
    """Replace the contract text in ``path``'s metadata."""
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = text
    onnx.save(model, path)
    return path


def edited(tmp_path: Path, edit: Edit, contract: ModelContract = LOCAL_CONTRACT) -> Path:
    path = conv_onnx(tmp_path / "edited.onnx", contract, seed=0)
    data = json.loads(contract.to_json())
    edit(data)
    return with_metadata(path, json.dumps(data))


BAD_FIELDS = [
    (_set("size_multiple", 0), "size_multiple"),  # ZeroDivisionError while padding, before
    (_set("size_multiple", "8"), "size_multiple"),  # TypeError, before
    (_set("size_multiple", 8.0), "size_multiple"),
    (_set("size_multiple", True), "size_multiple"),
    (_set("inputs", [["image", "rgb"]]), "inputs"),  # KeyError at frame 0, before
    (_set("inputs", [["image", "image", "extra"]]), "inputs"),
    (_set("inputs", "image"), "inputs"),
    (_set("inputs", []), "inputs"),
    (_set("outputs", [["alpha", "matte"]]), "outputs"),
    (_set("outputs", [["alpha", "alpha"], ["alpha", "foreground"]]), "outputs"),
    (_drop("inputs"), "inputs"),
    (_drop("size_multiple"), "size_multiple"),
    (_drop("name"), "name"),
    (_set("name", 5), "name"),
    (_set("architecture", "unet"), "architecture"),
    (_set("needs_trimap", "yes"), "needs_trimap"),
    (_set("fusion", "fancy"), "fusion"),
    (_set("resize", "stretch"), "resize"),
    (_set("weights", []), "weights"),
    (_set("colour_space", "linear"), "colour_space"),
]


@pytest.mark.parametrize(("edit", "field"), BAD_FIELDS)
def test_each_bad_field_is_one_input_error_naming_the_file_and_the_field(
    tmp_path: Path, edit: Edit, field: str
) -> None:
    path = edited(tmp_path, edit)
    with pytest.raises(InputError) as caught:
        read_onnx_contract(path)
    assert caught.value.path == path
    assert f"'{field}'" in caught.value.message
    assert "\n" not in str(caught.value)


def test_every_problem_is_listed_in_the_one_message(tmp_path: Path) -> None:
    def edit(data: dict[str, object]) -> None:
        data.update(size_multiple=0, needs_trimap="no", inputs=[["image", "rgb"]])

    with pytest.raises(InputError) as caught:
        read_onnx_contract(edited(tmp_path, edit))
    assert all(f"'{f}'" in caught.value.message for f in ("size_multiple", "needs_trimap", "inputs"))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("outputs", [["alpha", "foreground"]]), "no 'alpha' output"),
        (_set("fusion", "fba"), "needs 'foreground' and 'background'"),
    ],
)
def test_fields_that_contradict_each_other_are_refused(tmp_path: Path, edit: Edit, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        read_onnx_contract(edited(tmp_path, edit))


def test_trimap_inputs_need_needs_trimap(tmp_path: Path) -> None:
    contract = contract_for("alphagan")
    path = conv_onnx(tmp_path / "m.onnx", LOCAL_CONTRACT, seed=0)
    data = json.loads(contract.to_json())
    data["needs_trimap"] = False
    with pytest.raises(InputError, match="'needs_trimap' is false but inputs \\['trimap_1ch'\\]"):
        ModelContract.from_json(json.dumps(data), source=path)


@pytest.mark.parametrize(
    ("text", "expected"), [("{size_multiple: 8", "not JSON"), ("[1, 2]", "not an object")]
)
def test_metadata_that_is_not_a_json_object(tmp_path: Path, text: str, expected: str) -> None:
    path = with_metadata(conv_onnx(tmp_path / "m.onnx", LOCAL_CONTRACT, seed=0), text)
    with pytest.raises(InputError, match=expected) as caught:
        read_onnx_contract(path)
    assert caught.value.path == path


def test_the_retired_global_context_field_of_older_exports_still_loads(tmp_path: Path) -> None:
    path = edited(tmp_path, _set("global_context", True))
    assert read_onnx_contract(path) == LOCAL_CONTRACT


def test_a_good_contract_round_trips_through_the_file(tmp_path: Path) -> None:
    path = conv_onnx(tmp_path / "m.onnx", LOCAL_CONTRACT, seed=0)
    assert read_onnx_contract(path) == LOCAL_CONTRACT


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (replace(LOCAL_CONTRACT, inputs=(("img", "image"),)), "names inputs \\['img'\\]"),
        (replace(LOCAL_CONTRACT, outputs=(("matte", "alpha"),)), "outputs \\['matte'\\]"),
    ],
)
def test_contract_names_the_graph_lacks_are_refused_at_load(
    tmp_path: Path, contract: ModelContract, expected: str
) -> None:
    path = conv_onnx(tmp_path / "m.onnx", contract, seed=0)
    for load in (read_onnx_contract, lambda p: open_engine("ort", p, "cpu"), inspect_onnx):
        with pytest.raises(InputError, match=expected) as caught:
            load(path)
        assert caught.value.path == path


def test_the_ort_engine_refuses_a_bad_field_before_any_frame(tmp_path: Path) -> None:
    path = edited(tmp_path, _set("size_multiple", 0))
    with pytest.raises(InputError, match="'size_multiple' must be a positive integer, not 0"):
        open_engine("ort", path, "cpu")


def test_run_reports_a_bad_contract_in_one_line_with_exit_4(shared_data: Path, tmp_path: Path) -> None:
    photo = next((shared_data / "examples").rglob("*.png"))
    path = edited(tmp_path, _set("inputs", [["image", "rgb"]]))
    result = CliRunner().invoke(app, ["run", str(photo), "-m", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "Traceback" not in result.output
    assert str(path) in result.stderr and "'inputs'" in result.stderr and "'rgb'" in result.stderr
