"""The online service-time estimate behind `slo-slack`: how long the server takes, as last seen.

Two quantities, each an exponentially weighted mean and mean absolute deviation (the smoothed round
trip time and its variation of TCP's retransmission timer, RFC 6298, with one weight for both):

- server-side TTFT: `first_token` time - `sent` time, one sample per request that got a first token;
- time per output token after the first: (`finished` - `first_token`) / (output tokens - 1), one
  sample per request that finished ok with at least 2 output tokens.

The first sample x sets mean = x and deviation = x / 2 (RFC 6298's start), so early predictions err
long. A prediction is mean + spread * deviation: conservative by `spread` deviations. Until a
quantity has a sample there is no prediction (None), and slo-slack then releases at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Smoothed:
    """An exponentially weighted mean and mean absolute deviation of one quantity (in ns)."""

    alpha: float
    mean: float | None = None
    deviation: float = 0.0

    def add(self, sample: float) -> None:
        if self.mean is None:
            self.mean, self.deviation = sample, sample / 2
            return
        # Deviation first, against the mean before this sample (RFC 6298's order).
        self.deviation += self.alpha * (abs(sample - self.mean) - self.deviation)
        self.mean += self.alpha * (sample - self.mean)

    def predict(self, spread: float) -> float | None:
        return None if self.mean is None else self.mean + spread * self.deviation


class ServiceEstimate:
    """Server-side TTFT and time per output token, from the events of requests in flight."""

    def __init__(self, alpha: float, spread: float) -> None:
        self.ttft = Smoothed(alpha)
        self.per_token = Smoothed(alpha)
        self.spread = spread
        self._first_token_ns: dict[int, int] = {}

    def first_token(self, request_id: int, sent_ns: int, now_ns: int) -> None:
        self.ttft.add(now_ns - sent_ns)
        self._first_token_ns[request_id] = now_ns

    def finished(self, request_id: int, now_ns: int, ok: bool, output_tokens: int | None) -> None:
        first_ns = self._first_token_ns.pop(request_id, None)
        if ok and first_ns is not None and output_tokens is not None and output_tokens >= 2:
            self.per_token.add((now_ns - first_ns) / (output_tokens - 1))

    def ttft_ns(self) -> float | None:
        return self.ttft.predict(self.spread)

    def per_token_ns(self) -> float | None:
        return self.per_token.predict(self.spread)
