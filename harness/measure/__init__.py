"""The measurement around a run: idle capture, power sources, server metrics and container, the report,
and the embedded default (mock server + simulated sidecar). `session.run_measured` ties them to the
runner's pipeline; `joulebench run` (harness/cli/run.py) only turns flags into its settings.

Kept free of imports here: harness.report reads `server_metrics` without loading the stages.
"""
