"""Experiments: arms x rates x repeats, each (repeat, rate, arm) cell one measured run.

See docs/experiments.md and docs/architecture.md.
"""
