"""The README's pre-download command for a room without internet: `hf download ... --local-dir ...` run for real
(huggingface_hub's own CLI) against a local HTTP stand-in of the hub that serves a stand-in of
google/ddpm-celebahq-256, then the folder it wrote is loaded through load_model by path."""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from standins import SNAPSHOT, write_hub_cache
from src.files import repo_path

REPO_ID = "google/ddpm-celebahq-256"


def readme_command():
    """The README's download command, exactly as written there (an indented line starting with .venv/bin/hf)."""
    text = repo_path("README.md").read_text()
    found = re.search(r"^\s+(\.venv/bin/hf download \S+ --local-dir \S+)\s*$", text, re.M)
    assert found, "the README shows the pre-download command on a line of its own"
    return found.group(1)


def serve(repo_id, folder):
    """A hub with one repository: the API calls `hf download` makes (model info, file tree) and the files."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, body, kind, headers=(), head=False):
            self.send_response(200)
            for key, value in [("Content-Type", kind), ("Content-Length", str(len(body))), *headers]:
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def answer(self, head):
            path = self.path.split("?")[0]
            if path.startswith(f"/api/models/{repo_id}/tree/"):
                tree = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                        for f, d in files.items()]
                return self.send(json.dumps(tree).encode(), "application/json", head=head)
            if path.startswith(f"/api/models/{repo_id}/revision/"):
                info = {"id": repo_id, "sha": SNAPSHOT, "siblings": [{"rfilename": f} for f in files]}
                return self.send(json.dumps(info).encode(), "application/json", head=head)
            prefix = f"/{repo_id}/resolve/"
            name = path[len(prefix):].split("/", 1)[-1] if path.startswith(prefix) else None
            if name in files:
                etag = '"' + hashlib.sha256(files[name]).hexdigest() + '"'
                return self.send(files[name], "application/octet-stream",
                                 [("X-Repo-Commit", SNAPSHOT), ("ETag", etag)], head)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            self.answer(head=False)

        def do_HEAD(self):
            self.answer(head=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.slow
def test_the_readme_download_command_writes_a_folder_load_model_loads(tmp_path):
    from src.models import load_model

    snapshot = write_hub_cache(tmp_path / "published", REPO_ID)
    server = serve(REPO_ID, snapshot)
    room = tmp_path / "repository"  # the command runs from the repository root: .venv/bin/hf, models/...
    (room / ".venv" / "bin").mkdir(parents=True)
    (room / ".venv" / "bin" / "hf").symlink_to(Path(sys.executable).parent / "hf")  # this venv's hf
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
           "HF_HOME": str(tmp_path / "hf-home")}
    env.pop("HF_HUB_OFFLINE", None)
    try:
        done = subprocess.run(shlex.split(readme_command()), cwd=room, env=env, capture_output=True, text=True,
                              timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    folder = room / readme_command().split("--local-dir ")[1]
    assert (folder / "config.json").is_file() and (folder / ".cache" / "huggingface").is_dir(), "what hf writes"
    model = load_model(str(folder), device="cpu")
    assert (model.size, model.channels, model.class_conditional) == (256, 3, False)
    from diffusers import UNet2DModel

    original = UNet2DModel.from_pretrained(snapshot)
    assert all(torch.equal(a, b) for a, b in zip(model.unet.state_dict().values(), original.state_dict().values()))
