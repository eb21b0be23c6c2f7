"""The floor: a bare aiohttp handler doing the same arithmetic as the benchmarked services."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def add(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps({"result": body["x"] + body["y"]}), content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/add", add)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
