"""Saves the MLflow pyfunc model `make bench` serves: predict returns x + y for each row.

Runs in the bench-only virtualenv (.venv-bench/bin/python tests/bench/mlflow_model.py DIR), never in .venv.
Run as a script, the model class lives in __main__ and cloudpickle stores it by value, so the scoring
server loads it without this file on its path.
"""

from __future__ import annotations

import sys

import mlflow.pyfunc
import pandas as pd


class Add(mlflow.pyfunc.PythonModel):
    def predict(
        self, context: object, model_input: pd.DataFrame, params: dict[str, object] | None = None
    ) -> list[float]:
        return (model_input["x"] + model_input["y"]).tolist()


if __name__ == "__main__":
    mlflow.pyfunc.save_model(sys.argv[1], python_model=Add())
