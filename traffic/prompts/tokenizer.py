"""Token counts from a local tokenizer (the `tokenizers` package; nothing is downloaded).

`--tokenizer` takes a `tokenizer.json` file, or a folder holding one, or a folder with the
byte-level BPE pair `vocab.json` + `merges.txt` (e.g. Qwen2.5's slow-tokenizer files). Counts are of
the text alone, without special tokens or a chat template.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from foundation.errors import InputError

if TYPE_CHECKING:
    # Only for the annotation: `tokenizers` is optional and imported when a tokenizer is loaded.
    from tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenCounter:
    path: str
    sha256: str
    tokenizer: Tokenizer

    def count(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))

    def truncate(self, texts: list[str], lengths: np.ndarray) -> list[str]:
        """Each text cut to at most its length in tokens (decoded back to text)."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        cut = [e.ids[: int(n)] for e, n in zip(encodings, lengths, strict=True)]
        return self.tokenizer.decode_batch(cut, skip_special_tokens=False)

    def describe(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256}


def load_tokenizer(path: str | Path) -> TokenCounter:
    path = Path(path)
    try:
        import tokenizers
        from tokenizers import decoders, models, pre_tokenizers
    except ImportError:
        raise InputError(
            f"{path}: token counts need the `tokenizers` package (pip install tokenizers)"
        ) from None
    if path.is_dir():
        files = [path / "tokenizer.json"]
        if not files[0].is_file():
            files = [path / "vocab.json", path / "merges.txt"]
            if not all(f.is_file() for f in files):
                raise InputError(f"{path}: folder has neither tokenizer.json nor vocab.json + merges.txt")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path}: tokenizer not found")
    try:
        if len(files) == 1:
            tokenizer = tokenizers.Tokenizer.from_file(str(files[0]))
        else:
            tokenizer = tokenizers.Tokenizer(models.BPE.from_file(str(files[0]), str(files[1])))
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
    except Exception as exc:  # the Rust bindings raise plain Exception for unreadable files
        raise InputError(f"{path}: not a readable tokenizer ({str(exc).splitlines()[0][:120]})") from None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return TokenCounter(str(path), f"sha256:{digest.hexdigest()}", tokenizer)
