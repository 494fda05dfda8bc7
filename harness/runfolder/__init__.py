"""The run folder `runs/<run_id>/`: every file in it is read and written through this package.

- folder.py: `RunFolder` (create, open, manifest.json, the plan, the requests from log or Parquet)
- request_log.py: requests.jsonl, the append-only log, its compaction and recovery
- requests_file.py: requests.parquet
- power_file.py: power.parquet (also power_sources/<kind>/), power_samples.jsonl
- server_metrics_file.py: server_metrics.parquet
- report_files.py: summary.json, energy.parquet, report.html
- shard_merge.py: one run folder from the folders of a sharded run
"""

from harness.runfolder.folder import RunFolder, utc_iso

__all__ = ["RunFolder", "utc_iso"]
