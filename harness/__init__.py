"""How requests are sent and measured: backends, runner, request log, power, energy join, reports."""

__version__ = "0.1.0"
