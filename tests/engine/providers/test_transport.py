"""engine.providers.api.JSONTransport against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.providers.api import JSONTransport


def test_a_cookie_a_server_sets_is_never_sent_back():
    # The APIs authenticate by key header; a cookie (a CDN's, e.g. Cloudflare's __cf_bm) is neither kept nor sent.
    # Asked by host name: aiohttp's default jar would keep it for a name (it refuses cookies from IP addresses).
    async def echo(request: web.Request) -> web.Response:
        response = web.json_response({"cookie": request.headers.get("Cookie"), "key": request.headers.get("x-api-key")})
        response.set_cookie("__cf_bm", "abc123")
        return response

    async def main() -> list[dict]:
        app = web.Application()
        app.router.add_post("/v1/echo", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        transport = JSONTransport({"x-api-key": "k-1"}, timeout_s=10)
        try:
            return [(await transport.request("POST", f"http://localhost:{port}/v1/echo", {"n": n}))[0] for n in range(2)]
        finally:
            await transport.close()
            await runner.cleanup()

    assert asyncio.run(main()) == [{"cookie": None, "key": "k-1"}, {"cookie": None, "key": "k-1"}]
