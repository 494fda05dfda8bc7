"""`python -m harness` is `joulebench` (for machines where the console script is not installed)."""

from harness.cli import main

main()
