"""A small client for Prometheus' HTTP API (`/api/v1/query`, `/api/v1/query_range`), for the prometheus and
dcgm sources."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from foundation.errors import InputError

MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series in one query_range


@dataclass
class Series:
    labels: dict[str, str]  # without __name__
    t_s: np.ndarray  # evaluation timestamps (epoch seconds)
    values: np.ndarray


def with_selector(metric: str, selector: str) -> str:
    """`metric{selector}`; the selector is PromQL label matchers, with or without braces."""
    selector = selector.strip().removeprefix("{").removesuffix("}").strip()
    if selector and not re.fullmatch(r'(\s*[a-zA-Z_]\w*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*,?)+', selector):
        raise InputError(
            f'--power selector: expected PromQL label matchers like instance="host:9400", got {selector!r}'
        )
    return f"{metric}{{{selector}}}" if selector else metric


class PrometheusAPI:
    def __init__(self, url: str, client: httpx.Client | None = None, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"prometheus: expected an http(s) URL, got {url!r}")
        try:
            httpx.URL(url)  # a bad port or host: one line now, not an httpx exception mid-run
        except httpx.InvalidURL as exc:
            raise InputError(f"prometheus: {url!r} is not a valid URL ({exc})") from None
        self.url = url.rstrip("/")
        self._client = client
        self._timeout = timeout_s

    def _get(self, client: httpx.Client, path: str, params: dict[str, str]) -> Any:
        try:
            response = client.get(f"{self.url}/api/v1/{path}", params=params)
            doc = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise InputError(f"{self.url}: cannot query Prometheus ({exc})") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error", response.status_code) if isinstance(doc, dict) else doc
            raise InputError(f"{self.url}: query {params['query']!r} failed: {error}")
        return doc["data"]["result"]

    def query(self, expr: str) -> Any:
        """`expr` evaluated at the server's now: a list of {metric, value}, or [t, "v"] for a scalar."""
        client = self._client or httpx.Client(timeout=self._timeout)
        try:
            return self._get(client, "query", {"query": expr})
        finally:
            if self._client is None:
                client.close()

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[Series]:
        """Evaluate `expr` at every step in [start_s, end_s]; one Series per label set."""
        client = self._client or httpx.Client(timeout=self._timeout)
        merged: dict[tuple, tuple[dict[str, str], list[float], list[float]]] = {}
        try:
            chunk = step_s * (MAX_POINTS - 1)
            t = start_s
            while t <= end_s:
                stop = min(end_s, t + chunk)
                params = {"query": expr, "start": f"{t:.3f}", "end": f"{stop:.3f}", "step": f"{step_s:g}"}
                for item in self._get(client, "query_range", params):
                    labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
                    entry = merged.setdefault(tuple(sorted(labels.items())), (labels, [], []))
                    for ts, value in item["values"]:
                        entry[1].append(float(ts))
                        entry[2].append(float(value))
                t = stop + step_s
        finally:
            if self._client is None:
                client.close()
        return [
            Series(labels=labels, t_s=np.asarray(ts), values=np.asarray(vals))
            for labels, ts, vals in merged.values()
        ]


def pair(
    values: list[Series], times: list[Series], drop: tuple[str, ...] = ()
) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Join a value series with the series giving each value's own timestamp (same labels, same steps).

    Consecutive steps that saw the same sample are collapsed, so each reading appears once, at the
    time it was taken rather than at the evaluation steps. Returns (labels, reading time s, value).
    """

    def key(labels: dict[str, str]) -> tuple:
        return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))

    by_key = {key(s.labels): s for s in times}
    out = []
    for s in values:
        ts = by_key.get(key(s.labels))
        if ts is None:
            continue
        _, iv, it = np.intersect1d(s.t_s, ts.t_s, return_indices=True)
        read_t, value = ts.values[it], s.values[iv]
        ok = np.isfinite(read_t) & np.isfinite(value)
        read_t, value = read_t[ok], value[ok]
        keep = np.ones(len(read_t), bool)
        keep[1:] = read_t[1:] != read_t[:-1]
        out.append((s.labels, read_t[keep], value[keep]))
    return out


def epoch_s_to_ns(t_s: np.ndarray) -> np.ndarray:
    # Float seconds near 1.7e9 carry ~0.2 µs of resolution: round to µs rather than keep float noise.
    return np.round(t_s * 1e6).astype(np.int64) * 1000
