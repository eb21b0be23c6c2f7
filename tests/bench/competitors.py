"""The field in `make bench`: MLflow's scoring server and Jupyter Kernel Gateway serving the same x + y.

Both come from the bench-only virtualenv .venv-bench (`make bench` creates it; never the main .venv).
Each runs with its command line's defaults, on a free loopback port, with its own HOME-free state
in the bench's temporary directory:
- MLflow: a pyfunc model (tests/bench/mlflow_model.py) served by `mlflow models serve --env-manager local`,
  which execs uvicorn with the CLI's default of one worker; POST /invocations with one dataframe record.
- Kernel Gateway: `jupyter kernelgateway` with the notebook-http API over a two-cell notebook whose
  `# POST /add` cell prints x + y from REQUEST; its default of one kernel.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.support import ROOT, Process, free_port, wait_until

VENV = ROOT / ".venv-bench"
MLFLOW_BODY = '{"dataframe_records": [{"x": 1, "y": 2}]}'
KG_BODY = '{"x":1,"y":2}'
NOTEBOOK_CELLS = (
    "import json",
    "# POST /add\nreq = json.loads(REQUEST)\nprint(req['body']['x'] + req['body']['y'])",
)


class Unavailable(Exception):
    """The competitor is not installed, or did not start; the message says which."""


@dataclass
class Server:
    name: str
    version: str
    process: Process
    base: str
    path: str
    body: str

    def stop(self) -> None:
        self.process.stop()


def version(distribution: str) -> str | None:
    """The distribution's version in .venv-bench, None when it is not installed there."""
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def _env(workdir: Path) -> dict[str, str]:
    """.venv-bench first on PATH; HOME and Jupyter/IPython state in the bench's directory; no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O16N_", "JUPYTER", "MLFLOW_", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{VENV / 'bin'}:{env.get('PATH', '')}",  # `mlflow models serve` runs `uvicorn` from PATH
        HOME=str(workdir),
        JUPYTER_CONFIG_DIR=str(workdir / "jupyter-config"),
        JUPYTER_DATA_DIR=str(workdir / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(workdir / "jupyter-runtime"),
        IPYTHONDIR=str(workdir / "ipython"),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def _spawn(name: str, argv: list[str], workdir: Path) -> Process:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "wb") as handle:
        popen = subprocess.Popen(
            argv, env=_env(workdir), stdout=handle, stderr=subprocess.STDOUT, cwd=str(workdir), start_new_session=True
        )
    return Process(name, popen, log)


async def _ready(
    http: aiohttp.ClientSession, process: Process, url: str, body: str, check: Callable[[bytes], bool]
) -> None:
    async def answers() -> bool:
        headers = {"Content-Type": "application/json"}
        async with http.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status == 200 and check(await resp.read())

    try:
        await wait_until(answers, timeout=120, what=process.name, process=process)
    except (TimeoutError, RuntimeError) as exc:
        process.stop()
        raise Unavailable(f"did not start: {str(exc).splitlines()[0]}") from exc


async def start_mlflow(http: aiohttp.ClientSession, workdir: Path) -> Server:
    release = version("mlflow-skinny") or version("mlflow")
    if release is None:
        raise Unavailable("not installed (.venv-bench has no mlflow; `make bench` installs it when it can)")
    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "model"
    saved = await asyncio.create_subprocess_exec(
        str(VENV / "bin" / "python"),
        str(ROOT / "tests" / "bench" / "mlflow_model.py"),
        str(model),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=_env(workdir),
        cwd=str(workdir),
    )
    _, err = await saved.communicate()
    if saved.returncode != 0:
        raise Unavailable(f"saving the model failed: {err.decode(errors='replace').strip().splitlines()[-1:]}")
    port = free_port()
    argv = [str(VENV / "bin" / "mlflow"), "models", "serve", "-m", str(model), "-h", "127.0.0.1"]
    argv += ["-p", str(port), "--env-manager", "local"]
    process = _spawn("mlflow", argv, workdir)
    base = f"http://127.0.0.1:{port}"
    await _ready(http, process, f"{base}/invocations", MLFLOW_BODY, lambda b: json.loads(b) == {"predictions": [3]})
    return Server("MLflow scoring server", release, process, base, "/invocations", MLFLOW_BODY)


def write_notebook(path: Path) -> None:
    cells = [
        {"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [], "source": src}
        for i, src in enumerate(NOTEBOOK_CELLS)
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernelspec}, "cells": cells}
    path.write_text(json.dumps(notebook))


async def start_kernel_gateway(http: aiohttp.ClientSession, workdir: Path) -> Server:
    release = version("jupyter_kernel_gateway")
    if release is None or version("ipykernel") is None:
        raise Unavailable("not installed (.venv-bench has no jupyter_kernel_gateway; `make bench` installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    notebook = workdir / "add.ipynb"
    write_notebook(notebook)
    port = free_port()
    argv = [
        str(VENV / "bin" / "jupyter"),
        "kernelgateway",
        "--KernelGatewayApp.api=kernel_gateway.notebook_http",
        f"--KernelGatewayApp.seed_uri={notebook}",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
    ]
    process = _spawn("kernelgateway", argv, workdir)
    base = f"http://127.0.0.1:{port}"
    await _ready(http, process, f"{base}/add", KG_BODY, lambda b: b.strip() == b"3")
    return Server("Jupyter Kernel Gateway", release, process, base, "/add", KG_BODY)


STARTERS: dict[str, Callable[[aiohttp.ClientSession, Path], Awaitable[Server]]] = {
    "MLflow scoring server": start_mlflow,
    "Jupyter Kernel Gateway": start_kernel_gateway,
}
