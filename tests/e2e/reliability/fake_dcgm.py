"""A tiny dcgm-exporter stand-in whose answers can be made malformed, scraped by the real Prometheus.

`mode` picks what the next scrape gets: "ok" (fresh, sane samples for every node), "nan", "inf",
"huge", "nolabels", "garbage" (not the exposition format: Prometheus rejects the scrape),
"duplicate" (Hostname and hostname both set: label_replace yields clashing series), or "empty".
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aigc_operator.stack import free_port

MODES = ("ok", "nan", "inf", "huge", "nolabels", "garbage", "duplicate", "empty")
METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED")


def render(nodes: list[str], mode: str) -> str:
    if mode == "garbage":
        return "DCGM_FI_DEV_GPU_UTIL{Hostname= 12 oops\n\x00\xff not metrics at all {{{\n"
    if mode == "empty":
        return ""
    value = {"ok": "12", "nan": "NaN", "inf": "+Inf", "huge": "1.7e308"}.get(mode, "12")
    lines = []
    for metric in METRICS:
        lines.append(f"# TYPE {metric} gauge")
        for gpu, node in enumerate(nodes):
            if mode == "nolabels":
                labels = f'gpu="{gpu}"'
            elif mode == "duplicate":
                labels = f'gpu="0",Hostname="{node}",hostname="{nodes[0]}"'
            else:
                labels = f'gpu="0",Hostname="{node}"'
            sample = "-1.7e308" if mode == "huge" and metric.endswith("FREE") else value
            lines.append(f"{metric}{{{labels}}} {sample}")
    return "\n".join(lines) + "\n"


class FakeDcgm:
    def __init__(self, nodes: list[str]) -> None:
        self.nodes = nodes
        self.mode = "ok"
        self.scrapes: dict[str, int] = {}
        self.port = free_port()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                mode = fake.mode
                fake.scrapes[mode] = fake.scrapes.get(mode, 0) + 1
                body = render(fake.nodes, mode).encode("utf-8", "surrogateescape")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeDcgm:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
