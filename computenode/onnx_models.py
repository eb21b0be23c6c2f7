"""An ONNX model scored by onnxruntime in the compute node: input matching, batching-safe runs, output columns.

`inputData` is a column object `{column: [values]}`. Columns are matched to the model's
inputs by name (a 2-D input of width k then takes rows of k values per cell); a model
with one 2-D input `[N, k]` whose name is not among the columns takes k columns, in
the order sent, as its features. Values must fit the input's element type (no casting
of strings to numbers); anything else is InvalidInput naming the column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import InvalidInput
from common.pb import realtime_pb2 as rpb

# onnxruntime element type -> (numpy dtype, ML Server type name)
_TYPES: dict[str, tuple[Any, str]] = {
    "tensor(float)": (np.float32, "numeric"),
    "tensor(double)": (np.float64, "numeric"),
    "tensor(float16)": (np.float16, "numeric"),
    "tensor(int64)": (np.int64, "integer"),
    "tensor(int32)": (np.int32, "integer"),
    "tensor(int16)": (np.int16, "integer"),
    "tensor(int8)": (np.int8, "integer"),
    "tensor(uint8)": (np.uint8, "integer"),
    "tensor(string)": (np.object_, "character"),
    "tensor(bool)": (np.bool_, "logical"),
}
_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


def _free(dim: Any) -> bool:
    return not isinstance(dim, int) or dim < 0


def _dims(shape: Any) -> list[int]:
    return [-1 if _free(d) else int(d) for d in (shape or [])]


@dataclass(frozen=True)
class ModelInput:
    name: str
    onnx_type: str
    dtype: Any
    kind: str  # numeric | integer | character | logical
    shape: tuple[int, ...]  # -1 = free

    @property
    def width(self) -> int | None:
        """Values per row when the input is [N] or [N, k]; None for other ranks or free widths."""
        if len(self.shape) == 1:
            return 1
        if len(self.shape) == 2 and self.shape[1] > 0:
            return self.shape[1]
        return None

    def describe(self) -> str:
        dims = ", ".join("N" if d < 0 else str(d) for d in self.shape)
        return f"'{self.name}' ({self.kind}, {self.onnx_type} [{dims}])"


def _check_cells(column: str, kind: str, cells: list[Any]) -> None:
    """InvalidInput naming `column` when a value does not fit `kind`."""
    for value in cells:
        if value is None:
            if kind == "numeric":
                continue
            bad = "null"
        elif kind == "numeric":
            if isinstance(value, int | float) and not isinstance(value, bool):
                continue
            bad = f"{type(value).__name__} {value!r:.40}"
        elif kind == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                continue
            if isinstance(value, float) and value.is_integer():
                continue
            bad = f"{type(value).__name__} {value!r:.40}"
        elif kind == "character":
            if isinstance(value, str):
                continue
            bad = f"{type(value).__name__} {value!r:.40}"
        else:
            if isinstance(value, bool):
                continue
            bad = f"{type(value).__name__} {value!r:.40}"
        raise InvalidInput(f"inputData column '{column}': expected {kind} values, got {bad}", field=column)


def _flat(cells: list[Any]) -> list[Any]:
    out: list[Any] = []
    for cell in cells:
        if isinstance(cell, list):
            out.extend(_flat(cell))
        else:
            out.append(cell)
    return out


class OnnxModel:
    """One inference session and what it takes and gives. `run` blocks: call it in an executor."""

    def __init__(self, session: Any, labels: list[Any]) -> None:
        self.session = session
        self.inputs = [
            ModelInput(i.name, i.type, *_TYPES[i.type], tuple(_dims(i.shape)))
            for i in session.get_inputs()
            if i.type in _TYPES
        ]
        if len(self.inputs) != len(session.get_inputs()):
            odd = [i.type for i in session.get_inputs() if i.type not in _TYPES]
            raise InvalidInput(f"the ONNX model takes inputs of unsupported types: {', '.join(odd)}", field="model")
        if not self.inputs:
            raise InvalidInput("the ONNX model declares no inputs", field="model")
        self.output_names = [o.name for o in session.get_outputs()]
        self.output_types = [o.type for o in session.get_outputs()]
        self.labels = labels
        # Requests can be scored together only when every input has a free first dimension.
        self.batchable = all(i.shape and i.shape[0] < 0 for i in self.inputs)

    @classmethod
    def load(cls, content: bytes, threads: int) -> OnnxModel:
        """Build the session (blocking). InvalidInput when the bytes are not a model onnxruntime can run."""
        import onnx
        import onnxruntime as ort

        try:
            proto = onnx.load_model_from_string(content)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(content, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnx/onnxruntime raise many types; all mean "not a usable model"
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInput(f"the model is not a valid ONNX model: {message[:300]}", field="model") from None
        labels: list[Any] = []
        for node in proto.graph.node:
            for attribute in node.attribute:
                if attribute.name in _LABEL_ATTRIBUTES and not labels:
                    values = onnx.helper.get_attribute_value(attribute)
                    labels = [v.decode() if isinstance(v, bytes) else int(v) for v in values]
        return cls(session, labels)

    # ------------------------------------------------------------------ schema
    def input_columns(self) -> list[rpb.ModelColumn]:
        return [rpb.ModelColumn(name=i.name, type=i.kind, shape=list(i.shape)) for i in self.inputs]

    def output_columns(self) -> list[rpb.ModelColumn]:
        """The columns of outputData, as `columns` names them (when the model's shapes say)."""
        out: list[rpb.ModelColumn] = []
        for output in self.session.get_outputs():
            if output.type.startswith("seq(map"):  # ZipMap: one probability column per class label
                out.extend(rpb.ModelColumn(name=f"{output.name}_{label}", type="numeric") for label in self.labels)
                continue
            kind = _TYPES.get(output.type, (None, "numeric"))[1]
            dims = _dims(output.shape)
            width = math.prod(dims[1:]) if len(dims) > 1 and all(d > 0 for d in dims[1:]) else 1
            if width == 1:
                out.append(rpb.ModelColumn(name=output.name, type=kind, shape=dims))
                continue
            keys = self.labels if len(self.labels) == width else range(width)
            out.extend(rpb.ModelColumn(name=f"{output.name}_{key}", type=kind) for key in keys)
        return out

    def _takes(self) -> str:
        return ", ".join(i.describe() for i in self.inputs)

    # ------------------------------------------------------------------ inputs
    def prepare(self, data: Any) -> tuple[dict[str, np.ndarray], int]:
        """The feed for `inputData` and its row count; InvalidInput naming what does not fit."""
        if not isinstance(data, dict) or not data:
            raise InvalidInput("inputData must be an object of columns {name: [values]}", field="inputData")
        columns = {str(k): (v if isinstance(v, list) else [v]) for k, v in data.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise InvalidInput("inputData columns must all have the same number of values", field="inputData")
        rows = lengths.pop()
        if rows == 0:
            raise InvalidInput("inputData has no rows", field="inputData")
        names = {i.name for i in self.inputs}
        if names <= set(columns):
            unknown = [c for c in columns if c not in names]
            if unknown:
                raise InvalidInput(
                    f"inputData has columns the model does not take: {', '.join(unknown)}; it takes {self._takes()}",
                    field=unknown[0],
                )
            feed = {i.name: self._array(i, i.name, columns[i.name], rows) for i in self.inputs}
        elif len(self.inputs) == 1 and self.inputs[0].width is not None and not (names & set(columns)):
            feed = {self.inputs[0].name: self._stack(self.inputs[0], columns, rows)}
        else:
            missing = [i.name for i in self.inputs if i.name not in columns]
            raise InvalidInput(
                f"inputData lacks columns: {', '.join(missing)}; the model takes {self._takes()}", field=missing[0]
            )
        for i in self.inputs:
            if i.shape and i.shape[0] > 0 and rows != i.shape[0]:
                raise InvalidInput(f"the model takes exactly {i.shape[0]} rows; inputData has {rows}", field=i.name)
        return feed, rows

    def _array(self, model_input: ModelInput, column: str, cells: list[Any], rows: int) -> np.ndarray:
        flat = _flat(cells)
        _check_cells(column, model_input.kind, flat)
        rest = model_input.shape[1:]
        per_row = len(flat) // rows if rows else 0
        if per_row * rows != len(flat) or (all(d > 0 for d in rest) and per_row != math.prod(rest)):
            expected = math.prod(rest) if all(d > 0 for d in rest) else "a fixed number of"
            raise InvalidInput(
                f"inputData column '{column}': every row must hold {expected} value(s) for input "
                f"{model_input.describe()}",
                field=column,
            )
        array = self._convert(model_input, flat)
        if not rest:
            return array.reshape(rows)
        if len(rest) == 1:
            return array.reshape(rows, per_row)
        free = [d for d in rest if d < 0]
        if len(free) > 1:
            raise InvalidInput(f"input {model_input.describe()} has several free dimensions", field=column)
        known = math.prod(d for d in rest if d > 0)
        return array.reshape(rows, *[d if d > 0 else per_row // known for d in rest])

    def _stack(self, model_input: ModelInput, columns: dict[str, list[Any]], rows: int) -> np.ndarray:
        width = model_input.width
        assert width is not None
        if len(columns) != width:
            raise InvalidInput(
                f"the model takes one input {model_input.describe()}: {width} feature column(s) in order; "
                f"inputData has {len(columns)} ({', '.join(columns)})",
                field="inputData",
            )
        for name, cells in columns.items():
            _check_cells(name, model_input.kind, cells)
        flat = [cells[r] for r in range(rows) for cells in columns.values()]
        array = self._convert(model_input, flat)
        return array.reshape(rows) if len(model_input.shape) == 1 else array.reshape(rows, width)

    @staticmethod
    def _convert(model_input: ModelInput, flat: list[Any]) -> np.ndarray:
        if model_input.kind == "numeric":
            return np.array([math.nan if v is None else v for v in flat], dtype=model_input.dtype)
        if model_input.kind == "character":
            return np.array(flat, dtype=object)
        return np.array(flat, dtype=model_input.dtype)

    # ------------------------------------------------------------------ runs
    def run(self, feed: dict[str, np.ndarray]) -> list[Any]:
        """Score (blocking). onnxruntime failures on accepted input become InvalidInput."""
        try:
            return list(self.session.run(None, feed))
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInput(f"the model rejected the input: {message[:300]}", field="inputData") from None

    def columns(self, outputs: list[Any], start: int, stop: int) -> dict[str, Any]:
        """outputData for rows [start, stop) of a (possibly batched) run."""
        out: dict[str, Any] = {}
        for name, value in zip(self.output_names, outputs, strict=True):
            if isinstance(value, np.ndarray):
                part = value[start:stop]
                if part.ndim == 1:
                    out[name] = _cells(part)
                else:
                    part = part.reshape(part.shape[0], -1)
                    if part.shape[1] == 1:
                        out[name] = _cells(part[:, 0])
                        continue
                    keys = self.labels if len(self.labels) == part.shape[1] else range(part.shape[1])
                    for j, key in enumerate(keys):
                        out[f"{name}_{key}"] = _cells(part[:, j])
            elif isinstance(value, list) and value and isinstance(value[0], dict):  # ZipMap: [{label: p}]
                rows = value[start:stop]
                for key in rows[0]:
                    out[f"{name}_{key}"] = [float(row[key]) for row in rows]
            else:
                out[name] = list(value[start:stop])
        return out


def _cells(array: np.ndarray) -> Any:
    if array.dtype == np.object_:
        return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
    return np.ascontiguousarray(array)
