"""Generate common/pb from protos/ (run by `make protos`; CI checks the result is fresh).

Recipe after Temporal's: run grpc_tools.protoc into a temp dir, rewrite the generated
absolute imports (`from o16n.compute.v1 import`) into `common.pb`, then replace the tree.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "common" / "pb"


def main() -> int:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTOS}", f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}"]
        if protoc.main([*args, *sources]) != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        out = Path(tmp)
        for path in out.rglob("*.py*"):
            text = path.read_text()
            text = re.sub(r"^from o16n\.compute\.v1 import", "from common.pb import", text, flags=re.M)
            text = re.sub(r"^import o16n\.compute\.v1\.(\w+) as", r"import common.pb.\1 as", text, flags=re.M)
            (out / path.name).write_text(text)
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.mkdir(parents=True)
        for path in sorted(out.glob("*.py*")):
            shutil.copy(path, TARGET / path.name)
        (TARGET / "__init__.py").write_text('"""Generated from protos/ by `make protos`. Do not edit."""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
