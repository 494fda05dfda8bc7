"""NVML's clock-event (throttle) reasons: the bitmask decoded to names, and which of them mean throttling.

The bits are NVML's `nvmlClocksEventReason*` constants (`nvmlClocksThrottleReason*` in older
releases, same values). Not every reason lowers the clocks because of power or heat: `gpu_idle` (the
clocks drop because there is no work) and `applications_clocks_setting` (a clock someone set) are the
GPU doing what it was told, as are `sync_boost` and `display_clock_setting`. Throttling, for a
measurement, is the power cap and the thermal and hardware slowdowns: a run that hit them measured a
GPU running slower than it could, so its energy per request is that of a capped GPU.
"""

from __future__ import annotations

# bit -> (name, what it throttles: "power", "thermal", "hardware" or None for not throttling)
REASONS: dict[int, tuple[str, str | None]] = {
    0x1: ("gpu_idle", None),
    0x2: ("applications_clocks_setting", None),
    0x4: ("sw_power_cap", "power"),
    0x8: ("hw_slowdown", "hardware"),  # thermal or power brake, the hardware does not say which
    0x10: ("sync_boost", None),
    0x20: ("sw_thermal_slowdown", "thermal"),
    0x40: ("hw_thermal_slowdown", "thermal"),
    0x80: ("hw_power_brake_slowdown", "power"),
    0x100: ("display_clock_setting", None),
}
THROTTLE_NAMES = tuple(name for name, kind in REASONS.values() if kind is not None)
THROTTLE_MASK = sum(bit for bit, (_, kind) in REASONS.items() if kind is not None)


def reason_names(mask: int) -> list[str]:
    """Every set bit's name, in bit order; a bit NVML added after this table reads `bit_0x...`."""
    names = [name for bit, (name, _) in REASONS.items() if mask & bit]
    unknown = mask & ~sum(REASONS)
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"bit_{bit:#x}")
        bit <<= 1
    return names


def throttling(mask: int) -> list[str]:
    """The names of the set reasons that are throttling (power cap, thermal, hardware slowdown)."""
    return [REASONS[bit][0] for bit in REASONS if mask & bit & THROTTLE_MASK]
