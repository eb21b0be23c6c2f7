"""Pickled scikit-learn-style models: scored as a service definition in a dedicated Python shell pool.

Unpickling runs arbitrary code, so the bytes never reach `pickle.loads` in the compute node:
they are written to a file and the shell's initCode unpickles them; the code predicts.
An input problem (columns, types) surfaces as `RealtimeInputError: ...` so the compute
node can answer 400 rather than a failed execution.
"""

from __future__ import annotations

from pathlib import Path

from common.pb import compute_pb2 as pb

INPUT_ERROR = "RealtimeInputError"
# sklearn reports bad input (feature count, unconvertible strings) as these.
INPUT_ERRORS = (INPUT_ERROR, "ValueError", "TypeError", "KeyError")

_INIT = """
import pickle as _pickle
import numpy as _np
import pandas as _pd


class RealtimeInputError(Exception):
    pass


with open(_MODEL_PATH, "rb") as _f:
    _model = _pickle.load(_f)
if not callable(getattr(_model, "predict", None)):
    raise TypeError(f"the unpickled {type(_model).__name__} object has no predict method")
"""

_CODE = """
if inputData is None:  # the load probe
    outputData = None
else:
    _X = inputData
    _names = getattr(_model, "feature_names_in_", None)
    if _names is not None:
        _names = [str(n) for n in _names]
        _missing = [n for n in _names if n not in _X.columns]
        _unknown = [str(c) for c in _X.columns if str(c) not in _names]
        if _missing or _unknown:
            raise RealtimeInputError(
                "inputData columns do not match the model: "
                + (f"missing {', '.join(_missing)}" if _missing else "")
                + ("; " if _missing and _unknown else "")
                + (f"unknown {', '.join(_unknown)}" if _unknown else "")
                + f"; the model takes {', '.join(_names)}"
            )
        _X = _X[_names]
    else:
        _n = getattr(_model, "n_features_in_", None)
        if _n is not None and _X.shape[1] != _n:
            _have = ", ".join(map(str, _X.columns))
            raise RealtimeInputError(f"the model takes {_n} feature column(s); inputData has {_X.shape[1]} ({_have})")
        _X = _X.to_numpy()
    _pred = _np.asarray(_model.predict(_X))
    _out = {}
    if _pred.ndim == 1:
        _out["prediction"] = _pred
    else:
        for _j in range(_pred.shape[1]):
            _out[f"prediction_{_j}"] = _pred[:, _j]
    if callable(getattr(_model, "predict_proba", None)) and hasattr(_model, "classes_"):
        _proba = _np.asarray(_model.predict_proba(_X))
        for _j, _c in enumerate(_model.classes_):
            _out[f"probability_{_c}"] = _proba[:, _j]
    outputData = _pd.DataFrame(_out)
"""


def definition(model_hash: str, path: Path) -> pb.ServiceDefinition:
    """The service definition that loads and scores the pickle at `path` in a shell."""
    return pb.ServiceDefinition(
        key=f"realtime/{model_hash}",
        runtime=pb.PYTHON,
        code=_CODE,
        init_code=f"_MODEL_PATH = {str(path)!r}\n{_INIT}",
        inputs=[pb.Parameter(name="inputData", type="data.frame")],
        outputs=[pb.Parameter(name="outputData", type="data.frame")],
    )
