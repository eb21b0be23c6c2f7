"""Closed-loop load with wrk (Debian package) against one URL; parses its summary."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(auth)s
paths = {%(paths)s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, paths[(counter %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"errors\\":%%d,"
    .. "\\"non2xx\\":%%d,\\"p50\\":%%d,\\"p99\\":%%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0


def available() -> bool:
    return shutil.which("wrk") is not None


def run(base: str, paths: list[str], body: str, *, token: str | None, concurrency: int, seconds: float) -> Result:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script = _SCRIPT % {"body": body, "auth": auth, "paths": ", ".join(json.dumps(p) for p in paths)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "post.lua"
        path.write_text(script)
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(path),
                base,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    data = json.loads(line[len("RESULT ") :])
    seconds_run = data["duration_us"] / 1e6
    return Result(
        rps=data["requests"] / seconds_run if seconds_run else 0.0,
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        errors=data["errors"] + data["non2xx"],
        requests=data["requests"],
    )
