"""Shared fixtures for the traffic tests: the real sample data in ../shared/data."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ultrachat(shared_data: Path) -> Path:
    return shared_data / "prompts" / "ultrachat" / "ultrachat_prompts.jsonl"


@pytest.fixture(scope="session")
def energy_score(shared_data: Path) -> Path:
    return shared_data / "prompts" / "ai_energy_score" / "aienergyscore.jsonl"


@pytest.fixture(scope="session")
def azure_trace(shared_data: Path) -> Path:
    return shared_data / "traces" / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"


@pytest.fixture(scope="session")
def mooncake_trace(shared_data: Path) -> Path:
    return shared_data / "traces" / "mooncake" / "conversation_trace.jsonl"


@pytest.fixture(scope="session")
def llama_tokenizer(shared_data: Path) -> Path:
    return shared_data / "models" / "Llama-3-tokenizer" / "tokenizer.json"
