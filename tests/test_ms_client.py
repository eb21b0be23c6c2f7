"""Microsoft's Python client (azureml-model-management-sdk 1.0.1b6.post1), unmodified, against a real server.

The client lives in its own virtualenv (`make msclient` builds .venv-msclient; `make test` depends on
it). The flows below run there as a script; the only change is the documented Python >= 3.8 runtime
patch of `function_beget` (python-client.md §1), which builds the consume method and sends nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tests.support import ADMIN_PASSWORD, ROOT, WebNode, unique

CLIENT_PYTHON = ROOT / ".venv-msclient" / "bin" / "python"

PRELUDE = r'''
import json, sys, time
import azureml.deploy.server.service as service_module
from azureml.deploy import DeployClient
from azureml.deploy.server import MLServer


def function_beget(fn, fn_name, fn_args, doc=""):
    """The runtime patch for Python >= 3.8 (types.CodeType changed); same calls on the wire."""
    names = list(fn_args[1:])

    def method(self, *args, **kwargs):
        values = dict(zip(names, args))
        values.update(kwargs)
        return self._consume({name: values[name] for name in names})

    method.__name__ = fn_name
    method.__doc__ = doc
    return method


service_module.function_beget = function_beget
url, password, name = sys.argv[1], sys.argv[2], sys.argv[3]
client = DeployClient(url, use=MLServer, auth=("admin", password))
out = {}
'''

FLOWS = r"""
# code_str publish with a version, consume through the method named by operationId
svc = (client.service(name).version("1.0").code_str("result = x + y")
       .inputs(x=float, y=float).outputs(result=float).description("adds").deploy())
out["consume"] = svc.consume(1.5, 2.0).output("result")
out["capabilities_name"] = svc.capabilities()["name"]
out["swagger_is_text"] = isinstance(svc.swagger(), str)

# code_fn + init_fn, an alias, artifacts
def init():
    global offset
    offset = 100

def add(a, b):
    with open("sum.txt", "w") as f:
        f.write(str(a + b + offset))
    return a + b + offset

svc2 = (client.service(name + "fn").version("2.0").code_fn(add, init)
        .inputs(a=int, b=int).outputs(total=int).artifacts(["sum.txt"]).deploy())
res = svc2.add(1, 2)
out["fn_total"] = res.output("total")
out["fn_artifact"] = res.artifact("sum.txt").decode()
out["fn_error"] = res.error

# list / get
out["listed"] = sorted({s["name"] for s in client.list_services() if s["name"].startswith(name)})
out["versions"] = [s["version"] for s in client.list_services(name)]
out["get_version"] = client.get_service(name, version="1.0").capabilities()["version"]

# batch
batch = svc.batch([{"x": float(i), "y": 1.0} for i in range(4)], parallel_count=2).start()
for _ in range(600):
    results = batch.results(show_partial_results=True)
    if results.completed_item_count == results.total_item_count:
        break
    time.sleep(0.05)
out["batch_state"] = results.state
out["batch_outputs"] = [results.execution(i).output("result") for i in range(results.total_item_count)]
out["batch_listed"] = batch.execution_id in svc.list_batch_executions()
fbatch = svc2.batch([{"a": 1, "b": 1}], parallel_count=1).start()
for _ in range(600):
    fres = fbatch.results()
    if fres.completed_item_count == fres.total_item_count:
        break
    time.sleep(0.05)
out["batch_files"] = fbatch.list_artifacts(0)
out["batch_file"] = fbatch.artifact(0, "sum.txt").decode()
batch.cancel()
out["batch_after_cancel"] = batch.execution_id in svc.list_batch_executions()

# models and objects: uploaded to a session, snapshotted, published; the snapshot is deleted at once
svc3 = (client.service(name + "m").version("1.0").code_str("result = x * coef + len(words)")
        .inputs(x=float).outputs(result=float).models(coef=3.0).objects(words=["a", "b"]).deploy())
out["model"] = svc3.consume(2.0).output("result")
# a description-only redeploy sends the snapshot of an empty session: the objects stay
svc3 = client.redeploy_service(name + "m", version="1.0", description="new description")
out["model_after_redeploy"] = svc3.consume(2.0).output("result")
out["model_description"] = client.get_service(name + "m", version="1.0").capabilities()["description"]
out["deleted_m"] = client.delete_service(name + "m", version="1.0")

# redeploy with a version, then delete
svc = client.redeploy_service(name, version="1.0", code_str="result = x * y",
                              inputs={"x": float, "y": float}, outputs={"result": float})
out["redeployed"] = svc.consume(3.0, 4.0).output("result")
out["deleted"] = client.delete_service(name, version="1.0")
out["deleted_fn"] = client.delete_service(name + "fn", version="2.0")
try:
    client.get_service(name, version="1.0")
    out["get_after_delete"] = "found"
except Exception as exc:
    out["get_after_delete"] = type(exc).__name__
print("RESULT " + json.dumps(out))
"""


async def run_client(server: WebNode, script: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    assert CLIENT_PYTHON.exists(), "run `make msclient` (make test does) to build .venv-msclient"
    path = tmp_path / "client_flow.py"
    path.write_text(PRELUDE + script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O16N_", "PYTHON", "VIRTUAL_ENV"))}
    proc = await asyncio.create_subprocess_exec(
        str(CLIENT_PYTHON),
        str(path),
        server.url,
        ADMIN_PASSWORD,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(tmp_path),
        env=env,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 240)
    lines = [line for line in stdout.decode().splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"client failed:\n{stdout.decode()}\n{stderr.decode()[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


async def test_microsoft_client_flows(server: WebNode, tmp_path: Path) -> None:
    name = unique("ms")
    out = await run_client(server, FLOWS, tmp_path, name)
    assert out["consume"] == 3.5
    assert out["capabilities_name"] == name
    assert out["swagger_is_text"] is True
    assert out["fn_total"] == 103
    assert out["fn_artifact"] == "103"
    assert out["fn_error"] == ""
    assert out["listed"] == [name, name + "fn"]  # the models service is published later
    assert out["versions"] == ["1.0"]
    assert out["get_version"] == "1.0"
    assert out["batch_state"] == "Complete"
    assert out["batch_outputs"] == [1.0, 2.0, 3.0, 4.0]
    assert out["batch_listed"] is True
    assert out["batch_files"] == ["sum.txt"]
    assert out["batch_file"] == "102"
    assert out["batch_after_cancel"] is False
    assert out["model"] == 8.0
    assert out["model_after_redeploy"] == 8.0
    assert out["model_description"] == "new description"
    assert out["deleted_m"] is True
    assert out["redeployed"] == 12.0
    assert out["deleted"] is True and out["deleted_fn"] is True
    assert out["get_after_delete"] != "found"
