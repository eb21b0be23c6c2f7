"""The realtime floor: one ONNX model scored by onnxruntime in a bare aiohttp handler (no auth, no hops)."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import orjson
from aiohttp import web


def make_app(model_path: str) -> web.Application:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]

    async def score(request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())["inputData"]
        features = np.array(list(data.values()), dtype=np.float32).T
        outputs = session.run(None, {input_name: features})
        columns = {}
        for name, value in zip(output_names, outputs, strict=True):
            if value.ndim == 1:
                columns[name] = value
            else:
                for j in range(value.shape[1]):
                    columns[f"{name}_{j}"] = np.ascontiguousarray(value[:, j])
        body = {"success": True, "outputParameters": {"outputData": columns}}
        return web.Response(body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json")

    app = web.Application()
    app.router.add_post("/score", score)
    return app


def main() -> None:
    web.run_app(make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
