"""The browser benchmark's JupyterLab: `holiwidget lab` on a free port, and its kernel.

Kept beside benchmarks/explorer_browser.py (a benchmark does not import the tests).
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

# Seconds: JupyterLab's start and its stop.
START_S, STOP_S = 90, 60


# ---------------------------------------------------------------------------------------
# the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jupyter_env(folder: Path) -> dict[str, str]:
    """JupyterLab's user folders in ``folder``; no autosave, no news, no cell windowing."""
    settings = folder / "settings"
    for plugin, values in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
    }


class Lab:
    """``holiwidget lab`` in a subprocess on a free port with a random token; a context
    manager that stops it (SIGTERM, wait) and kills whatever of it is left."""

    def __init__(self, folder: Path, weights: Path) -> None:
        self.folder = folder
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.log_path = folder / "jupyterlab.log"
        cmd = [
            *(sys.executable, "-m", "holiwidget", "lab", "--no-browser"),
            *("--ip", "127.0.0.1", "--port", str(self.port)),
            *("--workdir", str(folder / "lab"), "--weights", str(weights)),
            *("--", f"--IdentityProvider.token={self.token}"),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=_jupyter_env(folder),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_S
        while True:
            try:
                self.api("status")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"JupyterLab did not start:\n{self.log()[-2000:]}") from None
                time.sleep(0.3)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str) -> dict | list:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read() or b"null")

    def stop(self) -> None:
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _, alive = psutil.wait_procs(procs, timeout=STOP_S)
        for p in alive:
            p.kill()

    def kernel_client(self):
        """A client of the notebook's kernel (its connection file in the runtime folder)."""
        from jupyter_client import BlockingKernelClient

        sessions = self.api("sessions")
        kernel_id = sessions[0]["kernel"]["id"]
        kc = BlockingKernelClient(
            connection_file=str(self.folder / "runtime" / f"kernel-{kernel_id}.json")
        )
        kc.load_connection_file()
        kc.start_channels()
        return kc


def kernel_eval(kc, expr: str, code: str = "") -> object:
    """Run ``code`` silently in the kernel, then evaluate ``expr`` (a JSON string) there."""
    msg_id = kc.execute(code, silent=True, store_history=False, user_expressions={"r": expr})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") != msg_id:
            continue
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"kernel: {content.get('ename')}: {content.get('evalue')}")
        r = content["user_expressions"]["r"]
        if r["status"] != "ok":
            raise RuntimeError(f"kernel: {r.get('ename')}: {r.get('evalue')}")
        return json.loads(ast.literal_eval(r["data"]["text/plain"]))
    raise TimeoutError("the kernel did not answer")


# ---------------------------------------------------------------------------------------
# measuring
