"""The server's shared state, and one generation request's life in it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.mock.asgi import DisconnectWatch, Receive
from harness.mock.engine import DONE, RequestSpec, Simulator
from harness.mock.faults import FaultDrawer, FaultPlan
from harness.mock.gpu_host import HostLayout
from harness.mock.live import LiveSim, Waiter
from harness.mock.metrics import ServerMetrics
from harness.mock.profile import Profile
from harness.mock.token_text import PromptCounter, token_ids_logprobs, token_texts
from harness.mock.truth import Truth


@dataclass(frozen=True)
class Settings:
    profile: Profile
    seed: int = 0
    speed: float = 1.0
    model_name: str = "mock"
    flavour: str = "vllm"  # which /metrics families (and /v1/models shape) to serve
    tokenizer: Path | None = None
    always_max_tokens: bool = False  # every request generates max_tokens, as with ignore_eos
    host: HostLayout = field(default_factory=HostLayout)  # the host's GPUs, how many serve, which one fails


class MockState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.profile = settings.profile
        self.counter = PromptCounter(settings.tokenizer)
        self.faults = FaultDrawer(self.profile.faults, settings.seed)
        self.created = int(time.time())
        self.sim = Simulator(self.profile, seed=settings.seed)
        self.metrics = ServerMetrics(self.sim, settings.flavour, settings.model_name, settings.speed)
        self.truth = Truth(self.profile)  # each request's true energy (GET /sim/requests)
        self.live: LiveSim | None = None
        self.in_flight = 0  # generation requests being served (TGI's 429 limit counts these)

    def start(self) -> None:
        """Simulated time starts now (called when the server starts serving)."""
        self.live = LiveSim(self.sim, self.settings.speed, [self.metrics, self.truth])

    @property
    def max_model_len(self) -> int:
        return self.profile.scheduler.max_model_len


class Generation:
    """A request inside the simulator: its tokens as they are generated, its timings, its faults."""

    def __init__(
        self,
        state: MockState,
        spec: RequestSpec,
        streaming: bool,
        plan: FaultPlan,
        receive: Receive,
    ) -> None:
        assert state.live is not None
        self.state = state
        self.plan = plan
        self.sent = 0
        self.received_ns = time.monotonic_ns()
        if state.settings.always_max_tokens and not spec.ignore_eos:
            spec = RequestSpec(
                spec.prompt_tokens, spec.max_tokens, ignore_eos=True, min_tokens=spec.min_tokens
            )
        self.waiter = Waiter(streaming)
        self.req = state.live.submit(spec, self.waiter)
        self._watch = DisconnectWatch(receive, self.waiter.wake)
        state.in_flight += 1

    @property
    def gone(self) -> bool:
        """The client went away."""
        return self._watch.gone

    @property
    def done(self) -> bool:
        return self.req.state == DONE

    async def wait_tokens(self) -> int:
        """How many tokens are new since the last `take` (0 once done, or once the client is gone)."""
        req = self.req
        while req.generated <= self.sent and req.state != DONE and not self._watch.gone:
            await self.waiter.wait()
        return req.generated - self.sent

    async def wait_done(self) -> None:
        while self.req.state != DONE and not self._watch.gone:
            await self.waiter.wait()

    def take(self) -> tuple[int, int]:
        """The range of tokens not yet sent, now marked sent."""
        start, self.sent = self.sent, self.req.generated
        return start, self.sent

    def texts(self, start: int, stop: int) -> list[str]:
        s = self.state
        return token_texts(s.settings.seed, self.req.rid, start, stop, s.profile.faults.linebreak_rate)

    def ids_logprobs(self, start: int, stop: int) -> list[tuple[int, float]]:
        return token_ids_logprobs(self.state.settings.seed, self.req.rid, start, stop)

    def finish(self) -> None:
        """The handler is done with the request: abort it in the simulator if it is still running."""
        self._watch.close()
        self.state.in_flight -= 1
        if not self.done:
            assert self.state.live is not None
            self.state.live.abort(self.req)

    def wall_ms(self, sim_from: float, sim_to: float) -> int:
        return int((sim_to - sim_from) / self.state.settings.speed * 1000)
