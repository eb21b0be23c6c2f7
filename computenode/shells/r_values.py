"""ML Server parameter types <-> R values, inside an R shell (computenode/shells/r_child.py).

The JSON shapes are those of common/values.py: vector = array, matrix = array of rows,
data.frame = object of columns. JSON null is NA (NaN and Inf come back as null).
Conversion is column-wise into rpy2's low-level vectors: numbers through a memoryview,
strings joined into one string and split by R (one C call instead of one per element).
Factors come back as their labels, Date as "YYYY-MM-DD", POSIXct as an ISO time in UTC.

Only imported inside an R shell child: importing it initializes nothing; `RValues()` needs
R running (one per shell, made after rpy2's `initr`).
"""

from __future__ import annotations

import array
import datetime as dt
import importlib
import math
from typing import Any

from common.values import ValueError_, check_json

# rpy2's type stubs do not re-export its low-level API (vectors, NA values, environments).
ri: Any = importlib.import_module("rpy2.rinterface")
_openrlib: Any = importlib.import_module("rpy2.rinterface_lib.openrlib")
_ffi = _openrlib.ffi
# R vector type -> (pointer to its cells, C type, memoryview format).
_VIEWS: dict[int, tuple[Any, str, str]] = {
    _openrlib.rlib.LGLSXP: (_openrlib.LOGICAL, "int", "i"),
    _openrlib.rlib.INTSXP: (_openrlib.INTEGER, "int", "i"),
    _openrlib.rlib.REALSXP: (_openrlib.REAL, "double", "d"),
}

INT_MAX = 2**31 - 1
_EPOCH_DATE = dt.date(1970, 1, 1)
_SEP = "\x01"  # joins strings for one-call transfer; strings containing it take the slow path

_R_HELPERS = r"""
local({
    split_strings <- function(s) strsplit(s, "\001", fixed = TRUE)[[1L]]
    join_strings <- function(x) list(paste(x, collapse = "\001"), which(is.na(x)))
    set_na <- function(x, at) { x[at] <- NA; x }
    as_frame <- function(columns, n) {  # class<- also marks it an S3 object (dispatch of dim, print)
        attr(columns, "row.names") <- .set_row_names(n)
        class(columns) <- "data.frame"
        columns
    }
    environment()
}, envir = new.env(parent = baseenv()))
"""


class RValues:
    """The converters, with the R functions they use (built once per shell, once R runs)."""

    def __init__(self) -> None:
        env = ri.evalr(_R_HELPERS)
        self.split_strings = env["split_strings"]
        self.join_strings = env["join_strings"]
        self.set_na = env["set_na"]
        self.as_frame = env["as_frame"]
        self.as_character = ri.baseenv["as.character"]
        self.as_posixct = ri.baseenv["as.POSIXct"]
        self.r_class = ri.baseenv["class"]
        self.na_real = float(ri.NA_Real)  # a NaN whose payload R reads as NA
        self.rlib = _openrlib.rlib

    def to_r(self, type_name: str, value: Any) -> Any:
        """The R value (an rpy2 Sexp) a service's code receives for decoded JSON `value`."""
        problem = check_json(type_name, value)
        if problem:
            raise ValueError_(problem)
        if type_name == "logical":
            return ri.BoolSexpVector([ri.NA_Logical if value is None else value])
        if type_name == "numeric":
            return ri.FloatSexpVector([ri.NA_Real if value is None else float(value)])
        if type_name == "integer":
            if value is None:
                return ri.IntSexpVector([ri.NA_Integer])
            number = int(value)
            if abs(number) > INT_MAX:
                raise ValueError_(f"{number} is outside R's integer range (±{INT_MAX})")
            return ri.IntSexpVector([number])
        if type_name == "character":
            return ri.StrSexpVector([ri.NA_Character if value is None else value])
        if value is None:
            return ri.NULL
        if type_name == "vector":
            return self.atomic(value)
        if type_name == "matrix":
            return self._matrix(value)
        return self._data_frame(value)

    def scalar_to_r(self, type_name: str, value: Any) -> Any:
        """The R value of a scalar input (logical, numeric, integer, character) as a bare SEXP
        (cdata), built through R's C API: rpy2's vectors cost more than the whole execution of
        a small service. Unprotected: the caller stores it in a protected vector before R
        allocates again."""
        problem = check_json(type_name, value)
        if problem:
            raise ValueError_(problem)
        rlib = self.rlib
        if type_name == "numeric":
            return rlib.Rf_ScalarReal(self.na_real if value is None else float(value))
        if type_name == "integer":
            if value is None:
                return rlib.Rf_ScalarInteger(-INT_MAX - 1)
            number = int(value)
            if abs(number) > INT_MAX:
                raise ValueError_(f"{number} is outside R's integer range (±{INT_MAX})")
            return rlib.Rf_ScalarInteger(number)
        if type_name == "logical":
            return rlib.Rf_ScalarLogical(-INT_MAX - 1 if value is None else int(value))
        if type_name == "character" and (value is None or "\x00" not in value):
            if value is None:
                return rlib.Rf_ScalarString(rlib.R_NaString)
            return rlib.Rf_ScalarString(rlib.Rf_mkCharCE(value.encode("utf-8"), rlib.CE_UTF8))  # protects its CHARSXP
        return self.to_r(type_name, value).__sexp__._cdata  # (a string with NUL fails here, as R refuses it)

    def scalar_from_r(self, type_name: str, cdata: Any) -> tuple[bool, Any]:
        """(True, JSON value) for a plain R scalar of a scalar output's own R type (no attributes:
        no class, no names), read straight from R's memory; (False, None) otherwise: from_r then."""
        rlib = self.rlib
        if cdata == rlib.R_NilValue:
            return True, None
        if rlib.ATTRIB(cdata) != rlib.R_NilValue or rlib.Rf_xlength(cdata) != 1:
            return False, None
        rtype = cdata.sxpinfo.type
        if type_name == "numeric" and rtype == rlib.REALSXP:
            number = _openrlib.REAL(cdata)[0]
            return True, number if math.isfinite(number) else None
        if type_name == "integer" and rtype == rlib.INTSXP:
            integer = _openrlib.INTEGER(cdata)[0]
            return True, None if integer == -INT_MAX - 1 else integer
        if type_name == "logical" and rtype == rlib.LGLSXP:
            flag = _openrlib.LOGICAL(cdata)[0]
            return True, None if flag == -INT_MAX - 1 else bool(flag)
        return False, None

    def atomic(self, cells: list[Any]) -> Any:
        """An R atomic vector for a list of JSON scalars, typed as jsonlite would type it."""
        kind = _kind(cells)
        if kind == "logical":
            flags = array.array("i", [-INT_MAX - 1 if v is None else int(v) for v in cells])
            return ri.BoolSexpVector.from_memoryview(memoryview(flags))
        if kind == "integer":
            ints = array.array("i", [-INT_MAX - 1 if v is None else int(v) for v in cells])
            return ri.IntSexpVector.from_memoryview(memoryview(ints))
        if kind == "numeric":
            na = self.na_real
            floats = array.array("d", [na if v is None else float(v) for v in cells])
            return ri.FloatSexpVector.from_memoryview(memoryview(floats))
        return self._strings([v if v is None or isinstance(v, str) else _scalar_text(v) for v in cells])

    def _strings(self, cells: list[str | None]) -> Any:
        if not cells:
            return ri.StrSexpVector([])
        has_na = None in cells
        joined = _SEP.join(["" if v is None else v for v in cells] if has_na else cells) + _SEP  # type: ignore[arg-type]
        if joined.count(_SEP) != len(cells):
            return ri.StrSexpVector([ri.NA_Character if v is None else v for v in cells])
        vector = self.split_strings(ri.StrSexpVector([joined]))
        missing = [i + 1 for i, v in enumerate(cells) if v is None] if has_na else []
        if missing:
            vector = self.set_na(vector, ri.IntSexpVector(missing))
        return vector

    def _matrix(self, rows: list[list[Any]]) -> Any:
        nrow = len(rows)
        ncol = len(rows[0]) if rows else 0
        cells = [row[j] for j in range(ncol) for row in rows]  # R stores column-major
        vector = self.atomic(cells)
        vector.do_slot_assign("dim", ri.IntSexpVector([nrow, ncol]))
        return vector

    def _data_frame(self, value: dict[str, Any] | list[dict[str, Any]]) -> Any:
        if isinstance(value, list):  # records
            names: dict[str, None] = {}
            for record in value:
                names.update(dict.fromkeys(record))
            columns = {name: [record.get(name) for record in value] for name in names}
        else:
            columns = {k: (v if isinstance(v, list) else [v]) for k, v in value.items()}
        nrows = len(next(iter(columns.values()))) if columns else 0
        frame = ri.ListSexpVector([self.atomic(col) for col in columns.values()])
        frame.do_slot_assign("names", ri.StrSexpVector(list(columns)))
        return self.as_frame(frame, ri.IntSexpVector([nrows]))

    def from_r(self, type_name: str, sexp: Any) -> Any:
        """JSON-ready Python for the R value a service's code left under a `type_name` output."""
        if sexp is ri.NULL or sexp.typeof == ri.RTYPES.NILSXP:
            return None
        if type_name in ("logical", "numeric", "integer", "character"):
            return self._scalar(type_name, sexp)
        if self._is_data_frame(sexp):
            if type_name == "data.frame":
                return self._frame_columns(sexp)
            raise ValueError_(f"expected a {type_name}, got a data.frame")
        if type_name == "vector":
            return self.elements(sexp)
        if type_name == "matrix":
            return self._matrix_rows(sexp)
        if type_name == "data.frame":
            if sexp.typeof == ri.RTYPES.VECSXP and self._names(sexp) is not None:
                return self._frame_columns(sexp)
            if self._dim(sexp) is not None:
                return self._matrix_columns(sexp)
            raise ValueError_(f"expected a data.frame or a named list of columns, got {self._describe(sexp)}")
        raise ValueError_(f"unknown type {type_name!r}")

    def _scalar(self, type_name: str, sexp: Any) -> Any:
        cells = self.elements(sexp)
        if len(cells) != 1:
            if not cells:
                return None
            raise ValueError_(f"expected a single {type_name} value, got {self._describe(sexp)}")
        value = cells[0]
        if value is None:
            return None
        if type_name == "character":
            if isinstance(value, str):
                return value
            return str(self.as_character(sexp)[0])
        if isinstance(value, str):
            raise ValueError_(f"expected a {type_name} value, got {self._describe(sexp)}")
        if type_name == "logical":
            return bool(value)
        if type_name == "numeric":
            return float(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError_(f"{value!r} is not an integer")
        return int(value)

    def elements(self, sexp: Any) -> list[Any]:
        """The cells of an R vector as JSON scalars (NA/NaN/Inf -> None)."""
        rtype = sexp.typeof
        classes = self._classes(sexp)
        if rtype == ri.RTYPES.LGLSXP:
            return [None if v == -INT_MAX - 1 else bool(v) for v in _flat(sexp)]
        if rtype == ri.RTYPES.INTSXP:
            ints = _flat(sexp)
            if "factor" in classes:
                levels = list(sexp.do_slot("levels"))
                return [None if v == -INT_MAX - 1 else levels[v - 1] for v in ints]
            return [None if v == -INT_MAX - 1 else v for v in ints]
        if rtype == ri.RTYPES.REALSXP:
            floats = _flat(sexp)
            if "Date" in classes:
                return [
                    None if not math.isfinite(v) else (_EPOCH_DATE + dt.timedelta(days=v)).isoformat() for v in floats
                ]
            if "POSIXct" in classes:
                return [
                    None if not math.isfinite(v) else dt.datetime.fromtimestamp(v, dt.UTC).isoformat() for v in floats
                ]
            return [v if math.isfinite(v) else None for v in floats]
        if rtype == ri.RTYPES.STRSXP:
            return self._string_cells(sexp)
        if rtype == ri.RTYPES.VECSXP:
            if "POSIXlt" in classes:
                return self.elements(self.as_posixct(sexp))
            out: list[Any] = []
            for item in sexp:
                cells = self.elements(item) if item.typeof != ri.RTYPES.NILSXP else [None]
                if len(cells) != 1:
                    raise ValueError_(f"expected a list of single values, got an element of length {len(cells)}")
                out.append(cells[0])
            return out
        raise ValueError_(f"cannot convert {self._describe(sexp)} to JSON")

    def _string_cells(self, sexp: Any) -> list[str | None]:
        if len(sexp) == 0:
            return []
        joined, missing = self.join_strings(sexp)
        parts = str(joined[0]).split(_SEP)
        if len(parts) != len(sexp):  # a string contains the separator
            return [None if v is ri.NA_Character else str(v) for v in sexp]
        cells: list[str | None] = list(parts)
        for i in _flat(missing) if len(missing) else ():
            cells[i - 1] = None
        return cells

    def _matrix_rows(self, sexp: Any) -> list[list[Any]]:
        cells = self.elements(sexp)
        dim = self._dim(sexp)
        if dim is None:  # a plain vector is one column, as as.matrix() makes it
            return [[v] for v in cells]
        if len(dim) != 2:
            raise ValueError_(f"expected a 2-dimensional matrix, got {len(dim)} dimensions")
        nrow, ncol = dim
        return [[cells[i + j * nrow] for j in range(ncol)] for i in range(nrow)]

    def _matrix_columns(self, sexp: Any) -> dict[str, list[Any]]:
        rows = self._matrix_rows(sexp)
        dim = self._dim(sexp) or [len(rows), 1]
        names = _column_names(sexp) or [f"V{j + 1}" for j in range(dim[1])]
        return {name: [row[j] for row in rows] for j, name in enumerate(names)}

    def _frame_columns(self, sexp: Any) -> dict[str, list[Any]]:
        names = self._names(sexp) or []
        columns: dict[str, list[Any]] = {}
        lengths = set()
        for name, column in zip(names, sexp, strict=False):
            if self._is_data_frame(column) or self._dim(column) is not None:
                raise ValueError_(f"column '{name}' is not a plain vector")
            columns[name] = self.elements(column)
            lengths.add(len(columns[name]))
        if len(lengths) > 1:
            raise ValueError_("columns have different lengths")
        return columns

    def _bare(self, sexp: Any) -> bool:
        """No attributes at all (no class, names or dim): one C call instead of listing them."""
        rlib = self.rlib
        return bool(rlib.ATTRIB(sexp.__sexp__._cdata) == rlib.R_NilValue)

    def _classes(self, sexp: Any) -> tuple[str, ...]:
        if self._bare(sexp):
            return ()
        attr = sexp.do_slot("class") if "class" in sexp.list_attrs() else None
        return tuple(attr) if attr is not None else ()

    def _is_data_frame(self, sexp: Any) -> bool:
        return sexp.typeof == ri.RTYPES.VECSXP and "data.frame" in self._classes(sexp)

    def _names(self, sexp: Any) -> list[str] | None:
        if self._bare(sexp) or "names" not in sexp.list_attrs():
            return None
        return [str(n) for n in sexp.do_slot("names")]

    def _dim(self, sexp: Any) -> list[int] | None:
        if self._bare(sexp) or "dim" not in sexp.list_attrs():
            return None
        return [int(d) for d in sexp.do_slot("dim")]

    def _describe(self, sexp: Any) -> str:
        kind = str(self.r_class(sexp)[0])
        try:
            return f"{kind} of length {len(sexp)}"
        except TypeError:
            return kind


def _kind(cells: list[Any]) -> str:
    """logical < integer < numeric < character: the narrowest R type holding every cell."""
    types = set(map(type, cells))
    types.discard(type(None))
    if not types <= {bool, int, float}:
        return "character"
    if float in types:
        return "numeric"
    if int in types:
        ints = [v for v in cells if type(v) is int]
        return "numeric" if max(ints) > INT_MAX or min(ints) < -INT_MAX else "integer"
    return "logical"


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _flat(sexp: Any) -> list[Any]:
    """The numbers of an R vector in storage (column-major) order, whatever its dim.

    Read straight from R's memory: rpy2's `memoryview()` calls a C helper that returns None
    without a reference (rpy2-rinterface 3.6.5), so each call took one from None until the
    shell died ("deallocating None") after some ten thousand conversions.
    """
    n = len(sexp)
    if n == 0:
        return []
    get_pointer, ctype, fmt = _VIEWS[sexp.typeof]
    buffer = _ffi.buffer(get_pointer(sexp.__sexp__._cdata), _ffi.sizeof(ctype) * n)
    cells: list[Any] = memoryview(buffer).cast(fmt).tolist()  # type: ignore[call-overload]
    return cells


def _column_names(sexp: Any) -> list[str] | None:
    if "dimnames" not in sexp.list_attrs():
        return None
    dimnames = sexp.do_slot("dimnames")
    if len(dimnames) < 2 or dimnames[1].typeof == ri.RTYPES.NILSXP:
        return None
    return [str(n) for n in dimnames[1]]
