"""A stand-in for the `vllm` package (tests only): `python -m vllm.entrypoints.openai.api_server` works."""

__version__ = "0.0.0+joulebench.fake"
