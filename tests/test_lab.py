"""`holiwidget lab`: JupyterLab from a working copy of the explorer notebook, stop signals
passed on to it, and nothing left running afterwards (checked by PID with psutil).

:class:`Lab` runs the real command in a subprocess on a free loopback port with a random
token and JupyterLab's user folders in a temporary folder; the browser test uses it too.
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
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from holiwidget.cli.lab import EXPLORER_NOTEBOOK

REPO = Path(__file__).resolve().parents[1]
#: Seconds: JupyterLab's start, and its stop (kernels shut down).
START_S, STOP_S = 90, 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(folder: Path) -> dict[str, str]:
    """The environment for a JupyterLab (or Notebook 7) of a test: its user folders in
    ``folder``, no autosave, no news pop-up, no windowing of cells."""
    settings = folder / "settings"
    for plugin, values in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        # every cell rendered (no windowing): outputs off screen stay in the page
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
    """``holiwidget lab ARGS`` in a subprocess, started and waited for.

    Stop it with :meth:`stop` (SIGTERM to ``holiwidget lab``, as a service manager or
    ``kill`` would send): it returns the exit status and the processes still alive. As a
    context manager it stops what still runs at the end (a failed test leaves nothing).
    """

    def __init__(self, folder: Path, *args: object) -> None:
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.log_path = folder / "jupyterlab.log"
        env = jupyter_env(folder)
        self.runtime = Path(env["JUPYTER_RUNTIME_DIR"])
        cmd = [
            *(sys.executable, "-m", "holiwidget", "lab", "--no-browser"),
            *("--ip", "127.0.0.1", "--port", str(self.port), *map(str, args)),
            *("--", f"--IdentityProvider.token={self.token}"),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # no terminal: a SIGINT can only come from the test
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_S
        while True:
            try:
                self.api("GET", "status")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"JupyterLab did not start:\n{self.log()[-2000:]}")
                time.sleep(0.3)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.poll() is None or self.processes():
            self.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, method: str, path: str, body: dict | None = None) -> dict | list:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read() or b"null")

    def kernel_eval(self, expression: str) -> object:
        """The value of a Python ``expression`` that gives a JSON string, in the kernel of
        the (one) running notebook: through a client of its connection file, as
        ``jupyter console --existing`` would connect."""
        from jupyter_client import BlockingKernelClient

        (session,) = self.api("GET", "sessions")
        client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{session['kernel']['id']}.json")
        )
        client.load_connection_file()
        client.start_channels()
        try:
            msg_id = client.execute("", silent=True, user_expressions={"r": expression})
            while True:
                reply = client.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            result = reply["content"]["user_expressions"]["r"]
            assert result["status"] == "ok", result
            return json.loads(ast.literal_eval(result["data"]["text/plain"]))
        finally:
            client.stop_channels()

    def processes(self) -> list[psutil.Process]:
        """``holiwidget lab``, the JupyterLab server and its kernels, while they run."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, list[psutil.Process]]:
        """Send ``signum`` to ``holiwidget lab`` and wait; its status and what is left."""
        procs = self.processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            status = self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            status = None
        _, alive = psutil.wait_procs(procs, timeout=STOP_S)
        for p in alive:  # do not leave them behind, even when the test fails
            p.kill()
        if status is None:
            self.proc.kill()
            status = self.proc.wait()
        return status, alive


def _command_line(process: psutil.Process) -> str:
    """The process's command line; empty for one that has exited meanwhile (or is a zombie)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def _kernel_processes(lab: Lab) -> list[psutil.Process]:
    return [p for p in lab.processes() if "ipykernel_launcher" in _command_line(p)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_stops_jupyterlab_and_its_kernels(signum: int, tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    repo_notebooks = sorted((REPO / "notebooks").iterdir())
    with Lab(tmp_path, "--workdir", workdir) as lab:
        kernel = lab.api("POST", "kernels", {"name": "python3"})
        deadline = time.monotonic() + START_S
        while not _kernel_processes(lab):
            assert time.monotonic() < deadline, "the kernel did not start"
            time.sleep(0.2)
        assert [k["id"] for k in lab.api("GET", "kernels")] == [kernel["id"]]
        procs = lab.processes()
        assert len(procs) >= 3  # holiwidget lab, JupyterLab, the kernel
        status, alive = lab.stop(signum)
    assert alive == [], f"left running: {alive}\n{lab.log()[-2000:]}"
    assert not any(p.is_running() for p in procs)
    assert status == 0, lab.log()[-2000:]  # JupyterLab's own status after a clean stop
    assert "Kernel shutdown" in lab.log()
    # The server ran on the working copy; the checkout's notebooks/ is as it was.
    assert (workdir / "notebooks" / "explorer.ipynb").read_bytes() == EXPLORER_NOTEBOOK.read_bytes()
    assert sorted((REPO / "notebooks").iterdir()) == repo_notebooks


def test_jupyterlab_serves_the_working_copy_and_keeps_the_users_edits(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    copy = workdir / "notebooks" / "explorer.ipynb"
    copy.parent.mkdir(parents=True)
    edited = json.loads(EXPLORER_NOTEBOOK.read_text())
    edited["cells"][0]["source"] = "# my edited explorer"
    copy.write_text(json.dumps(edited))
    with Lab(tmp_path, "--workdir", workdir) as lab:
        # the URL JupyterLab prints opens the notebook, not the Launcher
        assert f"127.0.0.1:{lab.port}/lab/tree/notebooks/explorer.ipynb?token=" in lab.log()
        served = lab.api("GET", "contents/notebooks/explorer.ipynb")
        assert served["content"]["cells"][0]["source"] == "# my edited explorer"
        # Saving writes to the working copy (what JupyterLab's autosave does).
        lab.api("PUT", "contents/notebooks/explorer.ipynb", {"type": "notebook", **served})
        status, alive = lab.stop()
    assert alive == [] and status == 0
    assert "".join(json.loads(copy.read_text())["cells"][0]["source"]) == "# my edited explorer"
    assert sorted(p.name for p in workdir.iterdir()) == ["notebooks"]


def _jupyterlab_status(args: list[str], cwd: Path) -> int:
    return subprocess.run(
        [sys.executable, "-m", "jupyterlab", *args], cwd=cwd, capture_output=True
    ).returncode


def test_lab_copies_the_notebook_once_and_exits_with_jupyterlabs_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**jupyter_env(tmp_path), "HOME": str(home)}

    def lab(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "holiwidget", "lab", "--no-browser", *args]
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)

    # JupyterLab prints its version and exits: the command's status is JupyterLab's.
    done = lab("--", "--version")
    assert done.returncode == 0, done.stderr
    copy = home / "holiwidget-lab" / "notebooks" / "explorer.ipynb"  # the default workdir
    assert copy.read_bytes() == EXPLORER_NOTEBOOK.read_bytes()
    copy.write_text(copy.read_text().replace("Holistic-CAM explorer", "My explorer"))
    edited = copy.read_bytes()
    bad = lab("--", "--ServerApp.port=not-a-port")
    expected = _jupyterlab_status(["--ServerApp.port=not-a-port"], tmp_path)
    assert expected != 0 and bad.returncode == expected
    assert copy.read_bytes() == edited  # never overwritten
    assert not (tmp_path / "holiwidget-lab").exists() and not (tmp_path / "notebooks").exists()

    # A folder that cannot be one: one line, exit 2, nothing started.
    (tmp_path / "file").write_text("x")
    done = lab("--workdir", str(tmp_path / "file"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "is not a folder; choose another --workdir" in done.stderr
    done = lab("--workdir", str(tmp_path), "--notebook", str(copy))
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


# A child that says when it is ready, and exits 7 on SIGTERM, SIGINT or SIGHUP.
_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    def stop(signum, frame):
        open(sys.argv[1], "w").write(signal.Signals(signum).name)
        sys.exit(7)
    if sys.argv[2] == "trap":
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, stop)
    open(sys.argv[1] + ".ready", "w").close()
    time.sleep(60)
    """
)
# The supervision of `holiwidget lab` and `holiwidget app` of their server, around the child above.
_PARENT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from holiwidget.cli.servers import supervise
    # as a shell starts it, whatever ran the tests; IGNORED as under nohup
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        ignored = s.name in os.environ.get("IGNORED", "").split()
        signal.signal(s, signal.SIG_IGN if ignored else signal.SIG_DFL)
    cmd = [sys.executable, "-c", sys.argv[1], *sys.argv[2:]]
    sys.exit(supervise(cmd, {}, Path.cwd(), "the child"))
    """
)


@pytest.mark.parametrize(
    ("signum", "trap", "status", "received"),
    [
        (signal.SIGTERM, "trap", 7, "SIGTERM"),
        (signal.SIGHUP, "trap", 7, "SIGHUP"),
        (signal.SIGINT, "trap", 7, "SIGTERM"),  # no terminal: a stop request, as SIGTERM
        (signal.SIGHUP, "no-trap", 128 + signal.SIGHUP, None),
        (signal.SIGINT, "no-trap", 128 + signal.SIGTERM, None),
    ],
)
def test_signals_are_passed_on_and_the_childs_status_returned(
    signum: int, trap: str, status: int, received: str | None, tmp_path: Path
) -> None:
    said = tmp_path / "signal"
    parent, child = _supervising(tmp_path, trap)
    try:
        parent.send_signal(signum)
        assert parent.wait(30) == status
        _, alive = psutil.wait_procs(child, timeout=10)
        assert alive == []
        if received is not None:
            assert said.read_text() == received
    finally:
        parent.kill()
        parent.wait()


def test_a_signal_ignored_as_under_nohup_stays_ignored(tmp_path: Path) -> None:
    # The child would stop at a SIGHUP passed on (its own handler), so it must get none.
    parent, child = _supervising(tmp_path, "trap", ignored="SIGHUP")
    try:
        parent.send_signal(signal.SIGHUP)  # a closed terminal: nohup asked to go on
        with pytest.raises(subprocess.TimeoutExpired):
            parent.wait(1.5)
        assert all(p.is_running() for p in child)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == 7
        assert (tmp_path / "signal").read_text() == "SIGTERM"
    finally:
        parent.kill()
        parent.wait()


def _supervising(
    tmp_path: Path, trap: str, ignored: str = ""
) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """supervise() running the test child, once the child is ready: (parent, [child])."""
    said = tmp_path / "signal"
    env = {**os.environ, "PYTHONPATH": str(REPO), "IGNORED": ignored}
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD, str(said), trap],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: a SIGINT can only come from this test
    )
    deadline = time.monotonic() + 60
    while not said.with_name("signal.ready").exists():
        if parent.poll() is not None or time.monotonic() > deadline:
            parent.kill()
            pytest.fail(f"the supervised child did not start (status {parent.poll()})")
        time.sleep(0.05)
    return parent, psutil.Process(parent.pid).children()
