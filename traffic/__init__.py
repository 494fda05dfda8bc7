"""What is sent and when: prompts, arrival schedules, traces and the arrival plans built from them.

Nothing in this package does network I/O; it reads files and returns data.
"""
