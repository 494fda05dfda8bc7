"""Prompt sources on the real samples and on small files made here: fields, conversations, polite,
filters, sampling, tokenizers, and the synthetic source."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from foundation.errors import InputError
from traffic.prompts import PromptOptions, load_source, parse_source
from traffic.prompts.content import POLITE_TURN
from traffic.prompts.tokenizer import load_tokenizer

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is a GPU?"},
    {"role": "assistant", "content": "A graphics processor."},
    {"role": "user", "content": "And a TPU?"},
    {"role": "assistant", "content": "A tensor processor."},
]


def load(source: str, demand: int = 10, seed: int = 0, **options):
    return load_source(
        PromptOptions(source=parse_source(source), **options), demand, np.random.default_rng(seed)
    )


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_ultrachat_sample(ultrachat):
    source = load(str(ultrachat))
    assert len(source.pool) == 500
    assert source.info["kind"] == "jsonl"
    assert source.info["fields"] == {"prompt": "prompt"}
    # The header carries the file's sha256 (the value published in shared/data/README.md).
    assert (
        source.info["content_hash"]
        == "sha256:2afafe733b124caa559442be370c02e6cd62333b76395ea2f467989a41efa1ba"
    )
    assert all(p and not p.endswith(POLITE_TURN) for p in source.pool.prompts)
    assert source.pool.chars.max() <= 499
    assert np.median(source.pool.chars) == pytest.approx(228, abs=3)


def test_ai_energy_score_skips_and_keeps_its_provenance_header(energy_score):
    source = load(str(energy_score))
    assert len(source.pool) == 1000  # 1,001 lines, the first a header
    assert source.info["provenance"]["_provenance"] == "AIEnergyScore/text_generation"
    assert not any(p.startswith('{"_provenance"') for p in source.pool.prompts)
    assert source.pool.chars.max() == 85_690


def test_conversation_modes_and_polite_variant(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"prompt_id": "c1", "messages": CONVERSATION}])
    first = load(str(path))
    assert first.pool.prompts[0] == "What is a GPU?" and first.pool.messages[0] is None
    assert first.pool.ids[0] == "c1"
    full = load(str(path), conversation="full")
    turns = json.loads(full.pool.messages[0])
    assert full.pool.prompts[0] is None
    assert turns == CONVERSATION[:4]  # up to the last user turn: the model answers it
    polite_full = json.loads(load(str(path), conversation="full", polite=True).pool.messages[0])
    assert polite_full == [
        *CONVERSATION,
        {"role": "user", "content": "Thank you!"},
    ]  # the paper's with_thanks
    polite_first = load(str(path), polite=True).pool.prompts[0]
    assert polite_first == "What is a GPU?\n\nThank you!"


def test_polite_conversation_ending_with_a_user_turn_keeps_roles_alternating(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": CONVERSATION[:4]}])
    turns = json.loads(load(str(path), conversation="full", polite=True).pool.messages[0])
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[-1]["content"] == "And a TPU?\n\nThank you!"


def test_polite_prompt_only_source(ultrachat):
    plain = load(str(ultrachat))
    polite = load(str(ultrachat), polite=True)
    assert [p + "\n\nThank you!" for p in plain.pool.prompts] == list(polite.pool.prompts)


def test_ultrachat_parquet_with_prompt_and_messages_columns(tmp_path):
    # The layout of HuggingFaceH4/ultrachat_200k: prompt, prompt_id, messages (list of structs).
    frame = pd.DataFrame({"prompt": ["What is a GPU?"], "prompt_id": ["abc"], "messages": [CONVERSATION[1:]]})
    path = tmp_path / "ultrachat.parquet"
    frame.to_parquet(path)
    assert load(str(path)).pool.prompts[0] == "What is a GPU?"
    assert json.loads(load(str(path), conversation="full").pool.messages[0]) == CONVERSATION[1:4]


def test_sharegpt_conversations_and_field_mapping(tmp_path):
    records = [
        {"uid": "s1", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    ]
    path = write_jsonl(tmp_path / "sharegpt.jsonl", records)
    source = load(str(path), fields={"id": "uid"}, conversation="full")
    assert json.loads(source.pool.messages[0]) == [{"role": "user", "content": "Hi"}]
    assert source.pool.ids[0] == "s1"


def test_csv_with_field_mapping_skips_empty_rows(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('question,answer\n"What, exactly?",a\n,b\nWhy?,c\n')
    source = load(str(path), fields={"prompt": "question"})
    assert list(source.pool.prompts) == ["What, exactly?", "Why?"]
    assert source.info["skipped"] == 1
    assert list(source.pool.ids) == ["0", "2"]  # row positions in the file


def test_json_list_source(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"text": "one"}, {"text": "two"}]))
    assert sorted(load(str(path)).pool.prompts) == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "content", "options", "expected"),
    [
        ("p.jsonl", '{"prompt": "a"}\n', {"fields": {"prompt": "question"}}, "field 'question' not found"),
        ("p.jsonl", '{"body": "a"}\n', {}, "no prompt field (columns: body)"),
        ("p.jsonl", "", {}, "no prompts in the source"),
        ("p.jsonl", '{"prompt": ""}\n{"prompt": "  "}\n', {}, "no prompts in the source"),
        ("p.jsonl", '{"prompt": "a"}\n{"prompt": \n', {}, "line 2: not valid JSON"),
        ("p.jsonl", '{"prompt": 5}\n', {}, "line 1: field 'prompt' is not text"),
        ("p.jsonl", '{"messages": [{"role": "robot", "content": "x"}]}\n', {}, "lacks a known role"),
        ("p.jsonl", '{"prompt": "a"}\n', {"conversation": "full"}, "needs a conversation column"),
        ("p.csv", "prompt\nabc\n", {"min_chars": 10}, "no prompt passes the length filter"),
        ("p.json", '{"prompt": "a"}', {}, "expected a JSON list of objects"),
        ("p.parquet", "not parquet", {}, "not a readable Parquet file"),
    ],
)
def test_bad_sources_give_one_line_errors(tmp_path, name, content, options, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        load(str(path), **options)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("missing.jsonl", "prompt file not found"),
        ("prompts.txt", "unknown prompt file type '.txt'"),
        ("synthetic:mean=-1", "mean must be > 0"),
        ("synthetic:colour=red", "unknown option"),
        ("synthetic:min=10,max=5", "need 1 <= min <= max"),
        ("hf:", "expected hf:NAME"),
        ("hf:a/b,revision=x", "unknown option"),
    ],
)
def test_bad_source_specs(text, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        parse_source(text)


def test_length_filters_in_characters_and_tokens(ultrachat, llama_tokenizer):
    chars = load(str(ultrachat), min_chars=100, max_chars=200)
    assert 0 < len(chars.pool) < 500
    assert chars.pool.chars.min() >= 100 and chars.pool.chars.max() <= 200
    tokens = load(str(ultrachat), tokenizer=str(llama_tokenizer), min_tokens=20, max_tokens=40)
    assert tokens.pool.tokens.min() >= 20 and tokens.pool.tokens.max() <= 40
    assert tokens.info["options"]["tokenizer"]["sha256"].startswith("sha256:")
    with pytest.raises(InputError, match="need --tokenizer"):
        load(str(ultrachat), max_tokens=40)


def test_tokenizers_from_file_folder_and_vocab_merges(shared_data, llama_tokenizer):
    llama = load_tokenizer(llama_tokenizer)
    assert llama.tokenizer.encode("Hello", add_special_tokens=False).ids == [9906]
    assert load_tokenizer(llama_tokenizer.parent).sha256 == llama.sha256
    qwen = load_tokenizer(shared_data / "models" / "Qwen2.5-0.5B-Instruct")  # vocab.json + merges.txt
    assert qwen.tokenizer.encode("Hello").ids == [9707]
    assert qwen.count(["Hello world"]).tolist() == [2]


def test_bad_tokenizer_paths(tmp_path):
    with pytest.raises(InputError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(InputError, match=r"neither tokenizer\.json"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="not a readable tokenizer"):
        load_tokenizer(bad)


def test_sampling_with_and_without_replacement(ultrachat):
    source = load(str(ultrachat), seed=3)
    order = source.sequence(500, np.random.default_rng(1))
    assert len(set(order.ids)) == 500  # a permutation: every prompt once
    with pytest.raises(InputError, match="only 500 prompts"):
        source.sequence(501, np.random.default_rng(1))
    replaced = load(str(ultrachat), replace=True).sequence(2000, np.random.default_rng(1))
    assert len(replaced) == 2000 and len(set(replaced.ids)) < 500 + 1
    subset = load(str(ultrachat), sample=20, replace=True)
    assert len(subset.pool) == 20
    assert set(subset.sequence(200, np.random.default_rng(2)).ids) <= set(subset.pool.ids)
    with pytest.raises(InputError, match="exceeds"):
        load(str(ultrachat), sample=501)


def test_matching_prefers_prompts_near_the_wanted_length(ultrachat, llama_tokenizer):
    source = load(str(ultrachat), tokenizer=str(llama_tokenizer))
    wanted = np.array([30, 60, 90, 10_000])
    matched = source.matching(wanted, np.random.default_rng(0))
    assert np.all(np.abs(matched.tokens[:3] - wanted[:3]) <= np.ceil(wanted[:3] * 0.1))
    assert matched.tokens[3] == source.pool.tokens.max()  # nothing that long: the nearest


def test_synthetic_source_is_seeded_and_sized_to_demand():
    a = load("synthetic", demand=300, seed=5)
    b = load("synthetic", demand=300, seed=5)
    c = load("synthetic", demand=300, seed=6)
    assert list(a.pool.prompts) == list(b.pool.prompts)
    assert a.info["content_hash"] == b.info["content_hash"] != c.info["content_hash"]
    assert len(a.pool) == 300 and len(set(a.pool.prompts)) == 300
    assert a.info["generator"] == "joulebench-synthetic-v1"
    words = np.array([len(p.split()) for p in a.pool.prompts])
    assert words.mean() == pytest.approx(128, rel=0.1)  # the default lognormal mean, in words
    assert words.std() / words.mean() == pytest.approx(0.5, rel=0.2)
    assert all(p[0].isupper() and p.endswith(".") for p in a.pool.prompts)


def test_synthetic_length_distributions():
    fixed = load("synthetic:dist=fixed,mean=40", demand=50)
    assert {len(p.split()) for p in fixed.pool.prompts} == {40}
    uniform = load("synthetic:dist=uniform,min=5,max=9", demand=400)
    assert {len(p.split()) for p in uniform.pool.prompts} == {5, 6, 7, 8, 9}


def test_synthetic_lengths_are_tokens_with_a_tokenizer(llama_tokenizer):
    source = load("synthetic:dist=uniform,min=50,max=300", demand=200, tokenizer=str(llama_tokenizer))
    counter = load_tokenizer(llama_tokenizer)
    recount = counter.count(list(source.pool.prompts))
    np.testing.assert_array_equal(recount, source.pool.tokens)
    assert source.pool.tokens.min() >= 45 and source.pool.tokens.max() <= 305
    matched = source.matching(np.array([1000, 17]), np.random.default_rng(0))
    assert np.all(np.abs(matched.tokens - [1000, 17]) <= 2)  # generated to the wanted length


def test_synthetic_with_a_length_filter_generates_until_enough_pass():
    source = load("synthetic:mean=100,cv=0.5", demand=100, min_chars=600, max_chars=800)
    assert len(source.pool) == 100
    assert source.pool.chars.min() >= 600 and source.pool.chars.max() <= 800
    with pytest.raises(InputError, match="too few synthetic prompts"):
        load("synthetic:dist=fixed,mean=10", demand=5, min_chars=5000)


def test_hf_source_without_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(InputError, match="`datasets` package is not installed"):
        load("hf:someone/something")
