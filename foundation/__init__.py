"""What every other package builds on, and imports nothing of the project's own.

errors.py          InputError: the one exception for bad input (one line, exit status 2)
atomic_write.py    files that readers see whole or not at all
tagged_parquet.py  joulebench's Parquet files: a JSON header per file, one reader, one error style
"""
