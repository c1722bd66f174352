"""A real ComfyUI server for the integration tests (the ``server`` fixture of tests/conftest.py starts one per
session).

``python main.py --cpu ...`` runs from ``$COMFYUI_DIR`` with ``$COMFYUI_PYTHON`` (default: this
interpreter) on a free loopback port, with the test-only ``torchaudio``/``torchvision`` shims from
``tests/integration/shims`` on the server's PYTHONPATH.  Everything the server writes stays in one
temporary folder: output, temp, input and user directories, and every model folder the pack reads
or writes (declared ``is_default`` in a generated extra_model_paths.yaml, so trained LoRAs and
students land there, not in ``$COMFYUI_DIR/models``).  The pack is symlinked into a temporary
custom_nodes folder under a name no copy in ``$COMFYUI_DIR/custom_nodes`` uses, and only that
name is whitelisted, so a second installed copy of the pack is neither loaded nor mixed into our
``/workflow_templates`` entry.  The server is always stopped (and the folder removed unless
``AUDIOX_KEEP_COMFY_TMP`` is set).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import comfy_fakes
import comfy_harness as H

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
PACK_DIR = Path(os.environ.get("AUDIOX_PACK_DIR") or H.ROOT).resolve()
# the folder name ComfyUI sees (module name, /workflow_templates key): deliberately neither the
# pyproject project name nor the usual clone name ComfyUI-AudioX, which a user may have installed
PACK_NAME = "ComfyUI-AudioX-under-test"
SHIMS = Path(__file__).resolve().parent / "shims"
STARTUP_S = float(os.environ.get("COMFYUI_STARTUP_TIMEOUT", "240"))
RUN_S = float(os.environ.get("COMFYUI_RUN_TIMEOUT", "600"))
# model folders the pack reads or writes, always redirected (plus whatever the workflows fill)
WRITTEN_FOLDERS = ("audiox", "loras", "text_encoders")

WORKFLOWS = H.iter_workflow_files(PACK_DIR)
if (Path(H.ROOT) / "tests" / "workflow_models.py").exists():
    import workflow_models  # noqa: F401  (registers tiny-weight factories)


class ServerFailed(RuntimeError):
    pass


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, root: Path):
        self.url, self.proc, self.log, self.root = url, proc, log, root

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    def request(self, method: str, path: str, body=None, timeout: float = 60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def get(self, path: str):
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path} -> {status}: {body}\n--- server log ---\n{self.log_tail()}"
        return body


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_files(root: Path) -> None:
    """Media and tiny weights every workflow refers to, under the server's directories."""
    env = comfy_fakes.FakeComfy(root)  # only used for its directory layout; not entered
    for path in WORKFLOWS:
        H.prepare_environment(env, H.load_workflow(path))


@contextmanager
def running_server():
    """Start the server (see the module docstring), yield a :class:`Server`, always stop it."""
    if not COMFYUI_DIR:
        raise ServerFailed("COMFYUI_DIR is not set")
    root = Path(tempfile.mkdtemp(prefix="audiox_comfy_"))
    custom = root / "custom_nodes"
    custom.mkdir()
    (custom / PACK_NAME).symlink_to(PACK_DIR, target_is_directory=True)
    _prepare_files(root)
    for f in WRITTEN_FOLDERS:
        (root / "models" / f).mkdir(parents=True, exist_ok=True)
    folders = sorted({p.name for p in (root / "models").iterdir() if p.is_dir()})
    yaml = root / "extra_model_paths.yaml"
    yaml.write_text("audiox_test:\n"
                    f"  base_path: {root}\n"
                    "  is_default: true\n"
                    "  custom_nodes: custom_nodes\n"
                    + "".join(f"  {f}: models/{f}\n" for f in folders))
    port = _free_port()
    log = root / "server.log"
    env = dict(os.environ, PYTHONPATH=str(SHIMS), PYTHONUNBUFFERED="1")
    cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
           "--port", str(port), "--disable-auto-launch", "--output-directory", str(root / "output"),
           "--temp-directory", str(root / "temp"), "--input-directory", str(root / "input"),
           "--user-directory", str(root / "user"), "--database-url", "sqlite:///:memory:",
           "--disable-api-nodes", "--extra-model-paths-config", str(yaml),
           "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME]
    (root / "user").mkdir(exist_ok=True)
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=COMFYUI_DIR, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        srv = Server(f"http://127.0.0.1:{port}", proc, log, root)
        try:
            deadline = time.monotonic() + STARTUP_S
            while True:
                if proc.poll() is not None:
                    raise ServerFailed(f"ComfyUI exited with {proc.returncode} during startup:\n{srv.log_tail(80)}")
                try:
                    if srv.request("GET", "/system_stats", timeout=5)[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError, socket.timeout):
                    pass
                if time.monotonic() > deadline:
                    raise ServerFailed(f"ComfyUI did not answer within {STARTUP_S:.0f} s:\n{srv.log_tail(80)}")
                time.sleep(1)
            yield srv
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
            if os.environ.get("AUDIOX_KEEP_COMFY_TMP"):
                print(f"kept ComfyUI test folder {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
