"""A loopback stand-in for the Hugging Face Hub: just enough of its HTTP API for `datasets.load_dataset`.

`datasets` (5.x) and `huggingface_hub` (2.x) ask, for a dataset repository:
- `HEAD/GET /datasets/{repo}/resolve/{revision}/{path}`: a file (README.md, the data files) with its
  commit (`X-Repo-Commit`) and `ETag`; a missing file is a 404 with `X-Error-Code: EntryNotFound`
  (that is how the libraries learn there is no `.huggingface.yaml` or `{name}.py` script);
- `GET /api/datasets/{repo}[/revision/{revision}]`: the repository's info (its commit `sha`);
- `GET /api/datasets/{repo}/tree/{revision}[/{path}]` and `POST .../paths-info/{revision}`: listings
  that resolve the data-file patterns of the dataset card;
- `GET /api/agent-harnesses`: a registry the hub client fetches for its user agent (served empty).

Anything else is answered 404 and recorded in `unknown` (and on stderr), so a test that fails because a
library version asks for something new says what it asked for. The dataset viewer's API lives on
another host (`datasets-server.<endpoint host>`), which does not resolve here, as for a mirror.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("resolve", re.compile(rf"^/datasets/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
    ("info", re.compile(rf"^/api/datasets/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")),
    ("tree", re.compile(rf"^/api/datasets/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")),
    ("paths_info", re.compile(rf"^/api/datasets/{_REPO}/paths-info/(?P<rev>[^/]+)$")),
]


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = ""

    def __post_init__(self) -> None:
        # A commit id that changes with the content, as a real one does.
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + self.files[path])
        self.sha = digest.hexdigest()


@dataclass
class HubStandIn:
    """A stand-in hub on 127.0.0.1; `url` is its HF_ENDPOINT. Start with `start()`, stop with `stop()`."""

    repos: dict[str, Repo] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # requests it does not implement
    served: list[str] = field(default_factory=list)  # every request, "METHOD path"
    _server: ThreadingHTTPServer | None = None

    def add(self, repo_id: str, files: dict[str, bytes]) -> Repo:
        self.repos[repo_id] = Repo(files)
        return self.repos[repo_id]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubStandIn:
        hub = self

        class Handler(_Handler):
            standin = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    standin: HubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the `served` list is the log

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def do_POST(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), parse_qs(split.query)
        self.standin.served.append(f"{self.command} {self.path}")
        if path == "/api/agent-harnesses":
            return self._json({"standardEnvVars": [], "harnesses": {}}, body)
        for name, pattern in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            repo = self.standin.repos.get(match["repo"])
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {match['repo']} not found", body)
            rev = match["rev"] or "main"
            if rev not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", body)
            return getattr(self, f"_{name}")(repo, match.groupdict().get("path") or "", query, body)
        self.standin.unknown.append(f"{self.command} {self.path}")
        print(f"hub stand-in: not implemented: {self.command} {self.path}", file=sys.stderr)
        self._error(404, None, "not implemented by the stand-in", body)

    def _resolve(self, repo: Repo, path: str, query: dict[str, list[str]], body: bool) -> None:
        content = repo.files.get(path)
        if content is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist", body)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{_oid(content)}"'}
        start, end = 0, len(content)
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start, end = int(ranged[1]), min(len(content), int(ranged[2] or len(content) - 1) + 1)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(content)}"
        self._send(206 if ranged else 200, content[start:end], "application/octet-stream", headers, body)

    def _info(self, repo: Repo, path: str, query: dict[str, list[str]], body: bool) -> None:
        repo_id = next(k for k, v in self.standin.repos.items() if v is repo)
        info = {
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": repo.sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
        }
        self._json(info, body)

    def _tree(self, repo: Repo, path: str, query: dict[str, list[str]], body: bool) -> None:
        base = path.strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries: dict[str, dict[str, Any]] = {}
        for file_path, content in sorted(repo.files.items()):
            if base and not file_path.startswith(base + "/"):
                continue
            rest = file_path[len(base) + 1 :] if base else file_path
            parts = rest.split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = "/".join([base, *parts[:depth]] if base else parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder, {"type": "directory", "oid": _oid(b""), "size": 0, "path": folder}
                    )
            if recursive or len(parts) == 1:
                entries[file_path] = _file_entry(file_path, content)
        if base and not entries:
            return self._error(404, "EntryNotFound", f"{base} does not exist", body)
        self._json(list(entries.values()), body)

    def _paths_info(self, repo: Repo, path: str, query: dict[str, list[str]], body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode()) if length else {}
        found = []
        for wanted in form.get("paths", []):
            wanted = wanted.strip("/")
            if wanted in repo.files:
                found.append(_file_entry(wanted, repo.files[wanted]))
            elif any(p.startswith(wanted + "/") for p in repo.files):
                found.append({"type": "directory", "oid": _oid(b""), "size": 0, "path": wanted})
        self._json(found, body)

    def _json(self, data: Any, body: bool) -> None:
        self._send(200, json.dumps(data).encode(), "application/json", {}, body)

    def _error(self, status: int, code: str | None, message: str, body: bool) -> None:
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
        self._send(status, json.dumps({"error": message}).encode(), "application/json", headers, body)

    def _send(self, status: int, data: bytes, kind: str, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # git's blob id


def _file_entry(path: str, content: bytes) -> dict[str, Any]:
    return {"type": "file", "oid": _oid(content), "size": len(content), "path": path}


def parquet_dataset(splits: dict[str, list[dict[str, Any]]]) -> dict[str, bytes]:
    """A dataset repository's files as the Hub's parquet datasets lay them out: one parquet file per
    split under data/, and a dataset card whose `configs` maps each split to its files."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    files: dict[str, bytes] = {}
    card = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, rows in splits.items():
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        files[f"data/{split}-00000-of-00001.parquet"] = buffer.getvalue()
        card += [f"  - split: {split}", f"    path: data/{split}-*"]
    files["README.md"] = "\n".join(
        [*card, "---", "", "A dataset served by the test hub stand-in.", ""]
    ).encode()
    return files
