"""A small JSON API on 127.0.0.1 for the `rest` source tests: every pagination style, auth,
bursts of 5xx and 429, a cursor that loops, incremental `updated_since` endpoints (strict,
inclusive `>=`, and one that ignores the parameter), redirects, and a record of every request
(path, query, headers) it got."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "tok-rest-4c2e91"
CUSTOMERS = [
    {"id": i, "name": f"c{i}", "address": {"city": "Graz", "zip": 8000 + i}} for i in range(1, 8)
]


class Api:
    """The server's state: what the tests change between runs, and what it counted."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.fail_first: dict[str, tuple[int, int, dict[str, str]]] = {}
        self.redirects: dict[str, str] = {}  # path -> Location (any origin)
        self.hand_off = ""  # the next-page link /hand-off answers with (any origin)
        self.requests: list[dict[str, Any]] = []
        self.base = ""

    def respond(  # noqa: C901, PLR0911, PLR0912 (a fake API: one branch per endpoint)
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        self.calls[path] += 1
        self.requests.append({"path": path, "query": dict(query), "headers": dict(headers)})
        if path in self.redirects:
            return 302, {"Location": self.redirects[path]}, {}
        if path in self.fail_first:
            count, status, extra = self.fail_first[path]
            if self.calls[path] <= count:
                return status, extra, {"error": "try later"}
        if headers.get("authorization") != f"Bearer {TOKEN}" and path.startswith("/secure"):
            return 401, {}, {"error": "unauthorized"}
        if path == "/key" and query.get("api_key") != TOKEN and headers.get("x-api-key") != TOKEN:
            return 401, {}, {"error": "bad key"}
        if path == "/basic":
            expected = "Basic " + base64.b64encode(f"ann:{TOKEN}".encode()).decode()
            if headers.get("authorization") != expected:
                return 401, {}, {"error": "bad credentials"}
            return 200, {}, {"data": CUSTOMERS[:2]}
        if path in ("/pages", "/secure/pages", "/flaky", "/limited"):
            page, size = int(query.get("page", 1)), int(query.get("per_page", 3))
            chunk = CUSTOMERS[(page - 1) * size : page * size]
            return 200, {}, {"data": {"items": chunk}}
        if path == "/key":
            return 200, {}, CUSTOMERS[:1]
        if path == "/offset":
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 3))
            return 200, {}, {"rows": CUSTOMERS[offset : offset + limit]}
        if path == "/cursor":
            position = int(query.get("cursor", 0))
            chunk = CUSTOMERS[position : position + 3]
            following = position + 3 if position + 3 < len(CUSTOMERS) else None
            return 200, {}, {"items": chunk, "meta": {"next_cursor": following}}
        if path == "/next":
            position = int(query.get("from", 0))
            chunk = CUSTOMERS[position : position + 3]
            following = (
                f"{self.base}/next?from={position + 3}" if position + 3 < len(CUSTOMERS) else None
            )
            return 200, {}, {"results": chunk, "next": following}
        if path == "/link":
            position = int(query.get("from", 0))
            chunk = CUSTOMERS[position : position + 3]
            extra = {}
            if position + 3 < len(CUSTOMERS):
                extra["Link"] = f'<{self.base}/link?from={position + 3}>; rel="next"'
            return 200, extra, chunk
        if path == "/loop":
            return 200, {}, {"items": [{"id": self.calls[path]}], "meta": {"next_cursor": "same"}}
        if path == "/endless":
            return (
                200,
                {},
                {"items": [{"id": self.calls[path]}], "meta": {"next_cursor": self.calls[path]}},
            )
        if path == "/events":
            since = query.get("updated_since", "")
            return 200, {}, {"events": [e for e in self.events if e["updated_at"] > since]}
        if path == "/secure/events/inclusive":  # `>=`: the records at the cursor come again
            since = query.get("updated_since", "")
            return 200, {}, {"events": [e for e in self.events if e["updated_at"] >= since]}
        if path == "/secure/events/ignoring":  # ignores `updated_since`: everything, always
            return 200, {}, {"events": list(self.events)}
        if path == "/landing":  # where another server's redirect leads
            return 200, {}, {"data": CUSTOMERS[:2]}
        if path == "/hand-off":  # one page, then a next-page link to `hand_off`
            return 200, {}, {"data": CUSTOMERS[:1], "next": self.hand_off}
        return 404, {}, {"error": "no such endpoint"}


@contextmanager
def serve_api() -> Iterator[tuple[str, Api]]:
    """The API on a free port for the block; yields its base URL and state."""
    api = Api()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = api.respond(parts.path, query, headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api.base, api
    finally:
        server.shutdown()
        server.server_close()
