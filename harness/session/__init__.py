"""One `joulebench run`, orchestrated: the pipeline of stages around the runner's execution.

    measured_run.py    run_measured: validated settings -> a reported run folder
    pipeline.py        RunContext, Stage, run_pipeline (before left to right, after right to left)
    config.py          what is measured around the requests (power, server, idle, method)
    idle_capture.py    stage: idle power before and after the run
    power_stage.py     stage: power sources checked, polled, read and saved
    metrics_scraper.py stage: the server's /metrics into server_metrics.parquet
    server_stage.py    stage: the server's container or server.json into the manifest
    report_stage.py    stage: the join and the reports, from the run folder only
    stage_state.py     what the stages share
    embedded_stack.py  the embedded default: mock server + simulated sidecar as subprocesses
    merged_power.py    joulebench merge's power: the power and report stages over the merged window

`joulebench run` (harness/cli/run_command.py) only turns flags into these settings.
"""
