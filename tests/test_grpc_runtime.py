"""O16N_GRPC_EXPERIMENTS (common/grpc_runtime.py) reaches gRPC before gRPC loads, in both nodes'
real processes; gRPC's own GRPC_EXPERIMENTS wins; a malformed value stops a node with a message.

gRPC reads its experiments once, when it loads, and names any it does not know in its log: an
unknown name is how a test sees that the value got there in time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from common import grpc_runtime
from common.settings import SettingsError
from tests.support import ROOT, Process, start_compute_node, start_web_node, wait_until


async def _logged(process: Process, text: str) -> None:
    async def found() -> bool:
        return text in process.log.read_text(errors="replace")

    await wait_until(found, timeout=30, what=f"{text!r} in {process.log}")


async def test_both_nodes_hand_the_setting_to_grpc_before_it_loads(
    tmp_path: Path, processes: list[Process], http: aiohttp.ClientSession
) -> None:
    compute, uri = await start_compute_node(tmp_path / "compute", O16N_GRPC_EXPERIMENTS="-o16n_probe_compute")
    processes.append(compute)
    web = await start_web_node(tmp_path / "web", [uri], O16N_GRPC_EXPERIMENTS="-o16n_probe_web,-event_engine_client")
    processes.append(web.process)
    await _logged(compute, "Unknown experiment: o16n_probe_compute")
    await _logged(web.process, "Unknown experiment: o16n_probe_web")
    # Both serve with it: a service published and consumed over the Call stream.
    headers = await web.headers(http)
    service = {
        "code": "result = x + y",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}, {"name": "y", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "result", "type": "numeric"}],
        "runtimeType": "Python",
    }
    async with http.post(f"{web.url}/services/add/1.0", json=service, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(f"{web.url}/api/add/1.0", json={"x": 1, "y": 2}, headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert body["outputParameters"] == {"result": 3.0}, body


async def test_grpc_experiments_set_by_the_operator_win(tmp_path: Path, processes: list[Process]) -> None:
    compute, _ = await start_compute_node(
        tmp_path / "compute", GRPC_EXPERIMENTS="-o16n_operator_choice", O16N_GRPC_EXPERIMENTS="-o16n_setting"
    )
    processes.append(compute)
    await _logged(compute, "Unknown experiment: o16n_operator_choice")
    assert "o16n_setting" not in compute.log.read_text(errors="replace")


def test_a_malformed_value_stops_a_node_with_a_message(tmp_path: Path) -> None:
    for module in ("computenode", "webnode"):
        done = subprocess.run(
            [sys.executable, "-m", module],
            env={"PATH": "/usr/bin:/bin", "O16N_GRPC_EXPERIMENTS": "event engine", "O16N_DATA_DIR": str(tmp_path)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done
        assert "O16N_GRPC_EXPERIMENTS: 'event engine' is not an experiment name" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_default_turns_the_event_engine_client_and_listener_off() -> None:
    """The shipped default, and that it is handed over only while gRPC is not loaded yet."""
    script = (
        "import os, sys\n"
        "from common import grpc_runtime\n"
        "from webnode.settings import WebNodeSettings\n"
        "from common.settings import load\n"
        "grpc_runtime.apply(load(WebNodeSettings).grpc_experiments)\n"
        "print(os.environ.get('GRPC_EXPERIMENTS'))\n"
        "assert 'grpc' not in sys.modules\n"
    )
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == grpc_runtime.DEFAULT == "-event_engine_client,-event_engine_listener"
    # Once grpc is imported it is too late: logged, and GRPC_EXPERIMENTS is left alone.
    late = (
        "import grpc, os\n"
        "from common import grpc_runtime\n"
        "grpc_runtime.apply('-x')\n"
        "print(os.environ.get('GRPC_EXPERIMENTS'))\n"
    )
    done = subprocess.run([sys.executable, "-c", late], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "ignored: gRPC was loaded before it could be applied" in done.stderr


def test_validate_takes_names_and_turned_off_names_only() -> None:
    for good in ("", grpc_runtime.DEFAULT, "tcp_rcv_lowat", "-a,b_2"):
        grpc_runtime.validate(good)
    for bad in ("event engine", "Event_Engine", "-", "a,,b", "+a", "a;rm"):
        with pytest.raises(SettingsError, match="O16N_GRPC_EXPERIMENTS"):
            grpc_runtime.validate(bad)
