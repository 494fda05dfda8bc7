"""The run folder `runs/<run_id>/`: every file in it is read and written through this package.

- folder.py: `RunFolder` (create, open, manifest.json, the plan, the requests from log or Parquet)
- request_log.py: requests.jsonl, the append-only log, its compaction and recovery
- requests_file.py: requests.parquet
- power_file.py: power.parquet (also power_sources/<kind>/), power_samples.jsonl
- server_metrics_file.py: server_metrics.parquet
- report_files.py: summary.json, energy.parquet, report.html
- shard_merge.py: one run folder from the folders of a sharded run
- latest.py: `<out>/latest`, the link to the newest run
- listing.py: a folder's runs and experiments, one line's worth each (`joulebench ls`)
- folder_kind.py: what a folder is (run, experiment, other), a run's id, whether it read power
- run_paths.py: run folders from a glob, the `latest` link counted once
"""

from harness.runfolder.folder import RunFolder, utc_iso

__all__ = ["RunFolder", "utc_iso"]
