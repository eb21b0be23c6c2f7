"""The one value converter: ML Server parameter types <-> JSON <-> Python values.

Server type names (ParameterDefinition.type): logical, numeric, integer, character,
vector, matrix, data.frame. JSON shapes (semantics §1): vector = array, matrix = array
of rows, data.frame = object of columns {"col": [...]}. Missing values are JSON null.

- `check_json` validates a decoded JSON value against a type without numpy (web node).
- `to_python` / `to_json` convert inside Python shells (numpy and pandas imported lazily).
The R shell maps the same JSON shapes to R values in computenode/shells/r_child.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

import orjson

TYPES = ("logical", "numeric", "integer", "character", "vector", "matrix", "data.frame")

# Aliases Microsoft's Python client and users send for the same types.
_ALIASES = {
    "bool": "logical",
    "float": "numeric",
    "double": "numeric",
    "int": "integer",
    "str": "character",
    "string": "character",
    "numpy.array": "vector",
    "array": "vector",
    "list": "vector",
    "numpy.matrix": "matrix",
    "pandas.dataframe": "data.frame",
    "dataframe": "data.frame",
}

# JSON schema type of each server type (per-service swagger).
JSON_SCHEMA_TYPES = {
    "logical": "boolean",
    "numeric": "number",
    "integer": "integer",
    "character": "string",
    "vector": "array",
    "matrix": "array",
    "data.frame": "object",
}


class ValueError_(ValueError):
    """A value does not fit its declared type; `.message` names what is wrong."""


def normalize_type(name: str) -> str | None:
    """The canonical server type name for `name`, or None when it is not a known type."""
    if name in TYPES:
        return name
    return _ALIASES.get(name.strip().lower())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


_SCALAR_TYPES = frozenset((type(None), bool, int, float, str))


def _all_scalars(cells: list[Any]) -> bool:
    """Every cell is a JSON scalar (one C-level pass; decoded JSON holds exactly these types)."""
    return set(map(type, cells)) <= _SCALAR_TYPES or all(_is_scalar(v) for v in cells)


def check_json(type_name: str, value: Any) -> str | None:  # noqa: C901 (one branch per type)
    """None when `value` (decoded JSON) fits `type_name`, else a message saying why not."""
    if value is None:
        return None
    if type_name == "logical":
        return None if isinstance(value, bool) else "expected true or false"
    if type_name == "numeric":
        return None if _is_number(value) else "expected a number"
    if type_name == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        if isinstance(value, float) and value.is_integer():
            return None
        return "expected an integer"
    if type_name == "character":
        return None if isinstance(value, str) else "expected a string"
    if type_name == "vector":
        if isinstance(value, list) and _all_scalars(value):
            return None
        return "expected an array of scalars"
    if type_name == "matrix":
        if isinstance(value, list) and all(isinstance(row, list) for row in value):
            widths = {len(row) for row in value}
            if len(widths) > 1:
                return "expected rows of equal length"
            if all(_all_scalars(row) for row in value):
                return None
        return "expected an array of rows (arrays of scalars)"
    if type_name == "data.frame":
        if isinstance(value, dict):
            lengths = {len(col) if isinstance(col, list) else 1 for col in value.values()}
            if len(lengths) > 1:
                return "expected columns of equal length"
            for col in value.values():
                cells = col if isinstance(col, list) else [col]
                if not _all_scalars(cells):
                    return "expected columns of scalars"
            return None
        if isinstance(value, list) and all(isinstance(r, dict) for r in value):
            return None  # a list of records also builds a data.frame
        return "expected an object of columns {name: [values]}"
    return f"unknown type {type_name!r}"


# ---------------------------------------------------------------- Python shell side


def to_python(type_name: str, value: Any) -> Any:
    """Turn decoded JSON into the Python value a service's code receives.

    null -> None for the scalar types; vector -> numpy.array (null -> nan when the other
    cells are numbers); matrix -> numpy.matrix; data.frame -> pandas.DataFrame.
    """
    problem = check_json(type_name, value)
    if problem:
        raise ValueError_(problem)
    if value is None:
        return None
    if type_name == "integer":
        return int(value)
    if type_name == "numeric":
        return float(value)
    if type_name in ("logical", "character"):
        return value
    import numpy as np

    if type_name == "vector":
        return np.array(_numbers_or_cells(value))
    if type_name == "matrix":
        if not value:
            return np.matrix(np.empty((0, 0)))
        cells = _numbers_or_cells([v for row in value for v in row])
        width = len(value[0])
        return np.matrix([cells[i : i + width] for i in range(0, len(cells), width)] if width else value)
    import pandas as pd

    if isinstance(value, dict):
        return pd.DataFrame({k: (v if isinstance(v, list) else [v]) for k, v in value.items()})
    return pd.DataFrame(value)


def _numbers_or_cells(cells: list[Any]) -> list[Any]:
    """`cells` with None as nan when every other cell is a number (a float array, not objects)."""
    if None in cells and _numeric_list(cells):
        return [math.nan if v is None else v for v in cells]
    return cells


def _numeric_list(values: list[Any]) -> bool:
    return any(_is_number(v) for v in values) and all(v is None or _is_number(v) for v in values)


def _plain(value: Any) -> Any:
    """A JSON-ready scalar from a Python/numpy/pandas scalar (NaN/NaT/inf -> None, dates -> ISO)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    if isinstance(value, dt.date):  # also pandas Timestamp; NaT is a datetime too
        return None if value != value else value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if type(value).__module__ == "numpy":
        import numpy as np

        if isinstance(value, np.datetime64 | np.timedelta64):
            import pandas as pd

            return (
                None
                if np.isnat(value)
                else _plain(pd.Timestamp(value) if isinstance(value, np.datetime64) else str(value))
            )
        try:
            return _plain(value.item())
        except (ValueError, TypeError):
            pass
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        try:
            return isoformat()
        except ValueError:
            return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (ImportError, TypeError, ValueError):
        pass
    return str(value)


def _column(value: Any) -> list[Any]:
    """JSON cells of a pandas Series or 1-d numpy array, with fast paths for plain dtypes."""
    kind = getattr(getattr(value, "dtype", None), "kind", "O")
    if kind in "biu":  # numpy bool/int: already plain
        return list(value.tolist())
    if kind == "f":
        return [v if v - v == 0 else None for v in value.tolist()]  # nan and inf -> None
    if kind in "Mm":  # datetime64 / timedelta64: through pandas, NaT -> None
        import pandas as pd

        return [_plain(v) for v in pd.Series(value).tolist()]
    return [_plain(v) for v in value.tolist()]


def _sequence(value: Any) -> list[Any]:
    if hasattr(value, "dtype") and hasattr(value, "tolist"):
        ndim = getattr(value, "ndim", 1)
        if ndim > 1:  # a matrix used as a vector: its cells row by row
            import numpy as np

            value = np.asarray(value).ravel()
        return _column(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [_plain(value)]
    return [_plain(v) for v in value]


def _rows(value: Any) -> list[list[Any]]:
    if hasattr(value, "__array__"):
        import numpy as np

        array = np.asarray(value)
        if array.ndim == 1:  # a vector is one column
            return [[v] for v in _column(array)]
        if array.ndim != 2:
            raise ValueError_(f"expected a 2-dimensional matrix, got {array.ndim} dimensions")
        return [_column(row) for row in array]
    return [_sequence(row) for row in value]


def _cells_of_scalar(value: Any) -> list[Any] | None:
    """The cells of a container given for a scalar output (None when `value` is a scalar)."""
    if isinstance(value, str | bytes) or getattr(value, "ndim", 1) == 0:
        return None
    if isinstance(value, dict):
        return list(value.values())
    if hasattr(value, "__len__") and hasattr(value, "__iter__"):
        return _sequence(value)
    return None


def to_json(type_name: str, value: Any) -> Any:  # noqa: C901 (one branch per type)
    """Turn the Python value a service's code left behind into JSON for its declared type."""
    if value is None:
        return None
    if type_name in ("logical", "integer", "numeric", "character"):
        cells = _cells_of_scalar(value)
        if cells is not None:
            if len(cells) > 1:
                raise ValueError_(
                    f"expected a single {type_name} value, got {type(value).__name__} of length {len(cells)}"
                )
            value = cells[0] if cells else None
        plain = _plain(value)
        if plain is None:
            return None
        if type_name == "character":
            return plain if isinstance(plain, str) else str(plain)
        if isinstance(plain, str):
            raise ValueError_(f"expected a {type_name} value, got the string {plain[:40]!r}")
        if type_name == "logical":
            return bool(plain)
        if type_name == "numeric":
            return float(plain)
        if isinstance(plain, float) and not plain.is_integer():
            raise ValueError_(f"{plain!r} is not an integer")
        return int(plain)
    if type_name == "vector":
        if hasattr(value, "columns"):
            raise ValueError_("expected a vector, got a DataFrame")
        return _sequence(value)
    if type_name == "matrix":
        if hasattr(value, "columns"):
            raise ValueError_("expected a matrix, got a DataFrame")
        return _rows(value)
    if type_name == "data.frame":
        columns = getattr(value, "columns", None)
        if columns is not None:  # pandas DataFrame
            return {str(col): _column(value.iloc[:, i]) for i, col in enumerate(columns)}
        if isinstance(value, dict):
            return {str(k): _sequence(v) for k, v in value.items()}
        raise ValueError_(f"expected a data frame, got {type(value).__name__}")
    raise ValueError_(f"unknown type {type_name!r}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


loads = orjson.loads
