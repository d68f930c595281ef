"""Network faults between the services and the broker: Shopify's toxiproxy (a TCP fault proxy) on loopback.

Kafka clients bootstrap, then connect to the address the broker *advertises* for the listener they came
in on. A proxy in front of the ordinary listener would be bypassed after the first metadata answer, so
the broker gets one extra listener per proxy (mesh_testing `KafkaServer(extra_listeners=...)`, kafka.sh
`KAFKA_EXTRA_LISTENERS`) whose advertised address is the proxy's own port: every connection a client
opens through the proxy, bootstrap and after, goes through the proxy.

toxiproxy-server is built by `deploy/tools/install.sh --only=toxiproxy` into .cache/bin (pinned in
deploy/tools/versions.env); `ensure_binary()` runs it when the binary is missing, a no-op otherwise.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mesh_testing.ports import free_port
from mesh_testing.processes import stop_processes
from mesh_testing.servers import repo_root

log = logging.getLogger("mesh_chaos.netproxy")


def ensure_binary() -> Path:
    """.cache/bin/toxiproxy-server, installed first if missing (the pinned version, cached afterwards)."""
    root = repo_root()
    binary = root / ".cache" / "bin" / "toxiproxy-server"
    done = subprocess.run(["bash", str(root / "deploy" / "tools" / "install.sh"), "--only=toxiproxy"], cwd=root,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not binary.is_file():
        raise RuntimeError(f"deploy/tools/install.sh --only=toxiproxy failed ({done.returncode}):\n{done.stderr}")
    return binary


@dataclass
class Route:
    """One proxy: clients connect to 127.0.0.1:`listen`, toxiproxy forwards to 127.0.0.1:`upstream`."""

    name: str
    listen: int
    upstream: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen}"


@dataclass
class Toxiproxy:
    """A toxiproxy-server process on a free loopback port and its HTTP API. `stop()` ends it."""

    api_port: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    routes: dict[str, Route] = field(default_factory=dict)

    @classmethod
    def start(cls, log_path: Path, timeout: float = 20) -> Toxiproxy:
        binary = ensure_binary()
        proxy = cls(free_port(), log_path)
        with log_path.open("ab") as out:
            proxy.popen = subprocess.Popen([str(binary), "-host", "127.0.0.1", "-port", str(proxy.api_port)],
                                           stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(proxy.api + "/version", timeout=2).status_code == 200:
                    return proxy
            except httpx.HTTPError:
                pass
            if proxy.popen.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                raise RuntimeError(f"toxiproxy-server did not answer on {proxy.api}; see {log_path}")
            time.sleep(0.1)  # poll interval

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = httpx.request(method, self.api + path, json=body, timeout=10)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def create(self, route: Route) -> Route:
        self._call("POST", "/proxies", {"name": route.name, "listen": route.address,
                                        "upstream": f"127.0.0.1:{route.upstream}", "enabled": True})
        self.routes[route.name] = route
        return route

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Disabled: every open connection through the proxy is closed and new ones are refused."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_latency(self, name: str, latency_ms: int, jitter_ms: int) -> None:
        """Each chunk of data, both ways, waits latency +- jitter ms (in order: TCP never reorders)."""
        for stream in ("upstream", "downstream"):
            self._call("POST", f"/proxies/{name}/toxics",
                       {"name": f"latency-{stream}", "type": "latency", "stream": stream, "toxicity": 1.0,
                        "attributes": {"latency": latency_ms, "jitter": jitter_ms}})

    def clear(self, name: str) -> None:
        """Remove every toxic of a proxy and enable it again."""
        for toxic in self._call("GET", f"/proxies/{name}/toxics") or []:
            self._call("DELETE", f"/proxies/{name}/toxics/{toxic['name']}")
        self.set_enabled(name, True)

    def stop(self) -> None:
        if self.popen is not None:
            stop_processes([self.popen], grace=10)
