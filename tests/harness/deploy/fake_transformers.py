"""A stand-in for Hugging Face transformers' `transformers` program, for the native-launch tests.

`transformers serve MODEL --host H --port P [--continuous-batching] [flags]` serves through a child
process running the real mock server, and stops it on SIGTERM or SIGINT. Beside it, a `transformers`
package that only has a version, importable by the program's interpreter (its `#!` line) through
PYTHONPATH, as the real package is on the GPU image.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

FAKE_TRANSFORMERS_CLI = """#!{python}
# Stand-in for `transformers serve MODEL --host H --port P [flags]`: answers as transformers 5.17 does
# where it matters here (GET /health; GET /v1/models 500 with no Hugging Face cache folder; no /version;
# completions only for the preloaded MODEL, by that name), generating through a mock server it fronts.
import argparse, http.client, http.server, signal, socket, subprocess, sys, threading
p = argparse.ArgumentParser()
p.add_argument("command", choices=["serve"])
p.add_argument("model")
p.add_argument("--host", default="localhost")
p.add_argument("--port", type=int, default=8000)
p.add_argument("--continuous-batching", action="store_true")
args, others = p.parse_known_args()
print(f"fake transformers serve: model={{args.model}} cb={{args.continuous_batching}} flags={{others}}",
      flush=True)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); inner = s.getsockname()[1]
child = subprocess.Popen([sys.executable, "-m", "harness", "mock-server", "--host", "127.0.0.1",
                          "--port", str(inner), "--model-name", args.model])

class Front(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/models":
            return self.answer(500, b'{{"detail": "cache directory not found"}}')
        if self.path == "/health":
            return self.forward()
        self.answer(404, b'{{"detail": "Not Found"}}')
    def do_POST(self):
        self.forward()
    def answer(self, status, body):
        self.send_response(status); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def forward(self):  # streamed through; the response ends when the connection closes (HTTP/1.0)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        upstream = http.client.HTTPConnection("127.0.0.1", inner, timeout=60)
        upstream.request(self.command, self.path, body, {{"content-type": "application/json"}})
        got = upstream.getresponse()
        self.send_response(got.status)
        for key, value in got.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(key, value)
        self.end_headers()
        while piece := got.read1(65536):
            self.wfile.write(piece); self.wfile.flush()
    def log_message(self, *a):
        pass

front = http.server.ThreadingHTTPServer((args.host, args.port), Front)
threading.Thread(target=front.serve_forever, daemon=True).start()
stopping = []
def stop(signum, frame):
    stopping.append(signum); child.terminate()
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
code = child.wait()
sys.exit(0 if stopping else code)
"""


def fake_transformers(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The stand-in program, and the environment in which its interpreter imports transformers 5.17.0."""
    program = tmp_path / "bin" / "transformers"
    program.parent.mkdir(exist_ok=True)
    program.write_text(FAKE_TRANSFORMERS_CLI.format(python=sys.executable))
    program.chmod(0o755)
    package = tmp_path / "site" / "transformers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "5.17.0"\n')
    return program, {"PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{REPO}"}
