"""Arrival shaping: policies that decide when each arrived request is released to the server.

Pure, seeded decision logic with no I/O and no clock of its own (every time is an argument), so a
policy runs the same in the runner, in a proxy and on `shaping_sim`'s simulated clock. The interface
is `policy_api`; the policies are parsed from `KIND:key=value,...` by `policy_specs.parse_policy`.
See docs/shaping.md.
"""

from traffic.shaping.policy_api import Arrival, Policy, ProtocolError, QueuePolicy, Release
from traffic.shaping.policy_params import PolicySpec
from traffic.shaping.policy_specs import POLICIES, param_docs, parse_policy
from traffic.shaping.shaping_sim import Outcome, SimServer, simulate

__all__ = [
    "POLICIES",
    "Arrival",
    "Outcome",
    "Policy",
    "PolicySpec",
    "ProtocolError",
    "QueuePolicy",
    "Release",
    "SimServer",
    "param_docs",
    "parse_policy",
    "simulate",
]
