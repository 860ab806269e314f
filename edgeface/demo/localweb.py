"""An nginx serving a folder on a loopback port, for the tests and `bench/fleet.py` (payloads by URL).

It runs unprivileged-style: its own prefix, config, pid, logs and temp paths in `workdir`, `daemon off`, so
nothing of a system nginx is touched; `stop()` ends exactly the process it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgeface.demo.localbroker import free_port, wait_until_listening
from edgeface.errors import EdgefaceError


@dataclass
class LocalWeb:
    root: Path
    workdir: Path
    port: int
    scheme: str
    process: subprocess.Popen[bytes]
    ca_file: Path | None = None  # the CA that signed the TLS certificate, for clients to trust

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def bytes_served(self) -> int:
        """Body bytes sent, from the access log (`$body_bytes_sent` is its last field)."""
        if not self.access_log.exists():
            return 0
        return sum(int(line.rsplit(" ", 1)[-1]) for line in self.access_log.read_text().splitlines() if line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        raise EdgefaceError("nginx not found: install it (apt-get install nginx, or `make system-dev`)")
    return binary


def _config(root: Path, workdir: Path, port: int, tls: tuple[Path, Path] | None, connections: int) -> str:
    temp = workdir / "temp"
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "")
    ssl_lines = f"ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};\n" if tls else ""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's private temp dir
    temps = "".join(
        f"  {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\nworker_rlimit_nofile {connections * 2 + 64};\n"
        f"events {{ worker_connections {connections}; }}\n"
        "http {\n"
        "  log_format bytes '$remote_addr $status $request_length $body_bytes_sent';\n"
        f"  access_log {workdir / 'access.log'} bytes;\n{temps}"
        "  default_type application/octet-stream;\n  keepalive_timeout 5;\n"
        f"  server {{\n    listen {listen};\n    {ssl_lines}    root {root};\n    location / {{ }}\n  }}\n"
        "}\n"
    )


def start_nginx(
    root: Path,
    workdir: Path,
    tls: tuple[Path, Path] | None = None,
    connections: int = 1024,
    timeout: float = 10.0,
) -> LocalWeb:
    """Serve `root` on a free loopback port (HTTPS with `tls` = (certificate, key) PEM files)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "temp").mkdir(exist_ok=True)
    config = workdir / "nginx.conf"
    config.write_text(_config(root, workdir, port, tls, connections))
    command = [_binary(), "-p", str(workdir), "-c", str(config), "-e", str(workdir / "error.log")]
    log_path = workdir / "error.log"
    with log_path.open("ab") as log:  # what nginx says before it opens its own error log
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    wait_until_listening(process, port, timeout, "nginx", log_path)
    return LocalWeb(root, workdir, port, "https" if tls else "http", process)
