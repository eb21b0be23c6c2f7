"""Which runtimes this compute node can offer, checked without importing R into this process."""

from __future__ import annotations

import asyncio
import sys

from computenode.limits import RunAs, ShellLimits


async def r_unavailable_reason(python: str = "", run_as: RunAs | None = None) -> str:
    """Empty when R and rpy2 work; otherwise why not (checked in a throwaway child process).

    Checked with the shells' interpreter, as the shells' user.
    """
    proc = await asyncio.create_subprocess_exec(
        python or sys.executable,
        "-c",
        "import rpy2.rinterface as ri; ri.initr()",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
        preexec_fn=ShellLimits(run_as=run_as).preexec(),
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        return "R did not start within 60 seconds"
    if proc.returncode == 0:
        return ""
    lines = [line for line in err.decode(errors="replace").strip().splitlines() if line.strip()]
    return "R is not available: " + (lines[-1] if lines else f"exit code {proc.returncode}")
