"""Checking a model contract read from a file, field by field, before anything runs.

A contract comes from an ONNX file's metadata or an engine's sidecar: text anyone can edit or a
newer or older mattecli can have written. Taken on trust, a bad field fails far from its cause
(``size_multiple: 0`` as a ZeroDivisionError while padding, an unknown input kind as a KeyError at
frame 0 of the first input). Here every field is checked when the model loads and all problems are
reported as one :class:`InputError` naming the file and each field.

The allowed values of the ``Literal`` fields come from :class:`ModelContract`'s own annotations,
so a kind or architecture added there is accepted here without a second list to keep in step.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from pathlib import Path

from mattecli.errors import InputError
from mattecli.models import InputKind, ModelContract, OutputKind

REEXPORT_HINT = "re-export the model with `mattecli export`, which writes a complete contract"
# Fields older exports wrote that no longer mean anything: accepted and dropped, so files exported
# before their removal (the shipped default model among them) still load.
RETIRED_FIELDS = frozenset({"global_context"})
# Input kinds built from the frame alone; every other kind is made from the trimap.
_FRAME_ONLY_KINDS = frozenset({"image"})


def _literal_choices(annotation: object) -> tuple[str, ...]:
    return tuple(str(v) for v in typing.get_args(annotation))


def _field_problems(data: dict[str, object]) -> list[str]:
    """One sentence per bad field of ``data`` (the contract's JSON object), naming the field."""
    hints = typing.get_type_hints(ModelContract)
    fields = {f.name: f for f in dataclasses.fields(ModelContract)}
    problems = [f"unknown field {key!r}" for key in data if key not in fields and key not in RETIRED_FIELDS]
    for name, spec in fields.items():
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                problems.append(f"field {name!r} is missing")
            continue
        value = data[name]
        choices = _literal_choices(hints[name]) if typing.get_origin(hints[name]) is typing.Literal else ()
        if choices and value not in choices:
            problems.append(f"field {name!r} is {value!r}, expected one of {', '.join(choices)}")
        elif hints[name] is str and (not isinstance(value, str) or not value):
            problems.append(f"field {name!r} must be a non-empty string, not {value!r}")
        elif hints[name] is bool and not isinstance(value, bool):
            problems.append(f"field {name!r} must be true or false, not {value!r}")
        elif name == "size_multiple" and (type(value) is not int or value < 1):
            problems.append(f"field 'size_multiple' must be a positive integer, not {value!r}")
        elif name == "weights" and not isinstance(value, dict):
            problems.append(f"field 'weights' must be a JSON object, not {value!r}")
    problems += _pairs_problems(data, "inputs", _literal_choices(InputKind))
    problems += _pairs_problems(data, "outputs", _literal_choices(OutputKind))
    return problems


def _pairs_problems(data: dict[str, object], key: str, kinds: tuple[str, ...]) -> list[str]:
    """Problems of ``inputs``/``outputs``: a non-empty list of [graph name, kind] pairs, each used once."""
    value = data.get(key)
    if value is None:
        return []  # reported as missing
    if not isinstance(value, list) or not value:
        return [f"field {key!r} must be a non-empty list of [graph name, kind] pairs, not {value!r}"]
    problems = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) and v for v in pair)):
            problems.append(f"field {key!r} holds {pair!r}, not a [graph name, kind] pair of strings")
        elif pair[1] not in kinds:
            problems.append(
                f"field {key!r}: {pair[0]!r} has unknown kind {pair[1]!r} (known: {', '.join(kinds)})"
            )
    if problems:
        return problems
    for position, label in ((0, "graph name"), (1, "kind")):
        seen = [pair[position] for pair in value]
        repeated = sorted({v for v in seen if seen.count(v) > 1})
        if repeated:
            problems.append(
                f"field {key!r} names the {label} {', '.join(map(repr, repeated))} more than once"
            )
    return problems


def _consistency_problems(contract: ModelContract) -> list[str]:
    """Fields that are each valid but contradict one another."""
    problems = []
    outputs = {kind for _, kind in contract.outputs}
    if "alpha" not in outputs:
        problems.append("field 'outputs' has no 'alpha' output")
    if contract.fusion == "fba" and not {"foreground", "background"} <= outputs:
        problems.append("field 'fusion' is 'fba', which needs 'foreground' and 'background' outputs")
    from_trimap = sorted(contract.input_kinds() - _FRAME_ONLY_KINDS)
    if from_trimap and not contract.needs_trimap:
        problems.append(f"field 'needs_trimap' is false but inputs {from_trimap} are built from the trimap")
    return problems


def contract_from_data(data: object, source: str | Path) -> ModelContract:
    """The contract in ``data`` (a parsed JSON value), or one InputError listing every bad field."""
    if not isinstance(data, dict):
        raise InputError(
            f"the mattecli contract is a JSON {type(data).__name__}, not an object",
            path=source,
            hint=REEXPORT_HINT,
        )
    problems = _field_problems(data)
    if not problems:
        kwargs = {k: v for k, v in data.items() if k not in RETIRED_FIELDS}
        kwargs["inputs"] = tuple(tuple(pair) for pair in kwargs["inputs"])
        kwargs["outputs"] = tuple(tuple(pair) for pair in kwargs["outputs"])
        contract = ModelContract(**kwargs)
        problems = _consistency_problems(contract)
        if not problems:
            return contract
    raise InputError(f"invalid mattecli contract: {'; '.join(problems)}", path=source, hint=REEXPORT_HINT)


def check_graph_names(
    contract: ModelContract, graph_inputs: Iterable[str], graph_outputs: Iterable[str], source: str | Path
) -> None:
    """Refuse a contract whose input/output names are not the graph's.

    Every graph input must be fed, so the contract must name exactly the graph's inputs; every
    output the contract names must exist (extra graph outputs are simply not fetched).
    """
    inputs, outputs = set(graph_inputs), set(graph_outputs)
    named_inputs = {name for name, _ in contract.inputs}
    problems = []
    if missing := sorted(named_inputs - inputs):
        problems.append(f"its contract names inputs {missing} that the graph lacks")
    if unfed := sorted(inputs - named_inputs):
        problems.append(f"the graph has inputs {unfed} that its contract does not name")
    if absent := sorted({name for name, _ in contract.outputs} - outputs):
        problems.append(f"its contract names outputs {absent} that the graph lacks")
    if problems:
        raise InputError(
            f"the model's graph and its contract disagree: {'; '.join(problems)} "
            f"(graph inputs {sorted(inputs)}, outputs {sorted(outputs)})",
            path=source,
            hint=REEXPORT_HINT,
        )
