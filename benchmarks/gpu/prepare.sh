#!/usr/bin/env bash
# CPU-machine side of the GPU experiment (needs PyPI and Debian's package mirror, no GPU).
# Makes the folders that travel to the GPU machine, all under git-ignored paths:
#   .chunks/c00 .. c02         vLLM 0.26.0 and what it needs, packed and split (recipe/prepare_wheels.sh)
#   .gpu/whl                   joulebench's dependencies the GPU image lacks or has too old
#   .gpu/slim                  the same without vLLM's site: pydantic, uvicorn, fastapi, matplotlib ...
#   .gpu/jbtf                  what joulebench and `transformers serve` lack on the image (ENGINE=transformers):
#                              .gpu/slim less what the image has, so that it travels with .gpu/data in one call
#   .gpu/deb                   Debian's prometheus package (unpacked there with dpkg -x)
#   .gpu/data                  UltraChat prompts, the Llama-3.2-1B config and the Llama 3 tokenizer
# Usage (repository root): bash benchmarks/gpu/prepare.sh [SHARED_DATA (default ../shared/data)]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data}
grep -qx '/.chunks/' .gitignore && grep -qx '/.gpu/' .gitignore || { echo ".chunks/ and .gpu/ must be git-ignored" >&2; exit 1; }

[ -f .chunks/c00/SHA256 ] || bash benchmarks/gpu/recipe/prepare_wheels.sh .chunks 32

rm -rf .gpu && mkdir -p .gpu/whl .gpu/deb .gpu/data/models .gpu/data/prompts
# typer 0.29 (joulebench's CLI relies on it) and pandas 3 (what the tests run) replace the image's.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl asyncio-throttle==1.0.2 docker==7.1.0 typer==0.29.2 pandas==3.1.1
# Without vLLM's site (benchmarks/gpu/power_crash.sh, `transformers serve`): what the GPU image lacks
# for joulebench and its mock server, and for transformers' OpenAI-compatible server.
mkdir -p .gpu/slim && cp .gpu/whl/typer-* .gpu/whl/asyncio_throttle-* .gpu/whl/docker-* .gpu/slim/
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/slim pydantic pydantic-core annotated-types typing-inspection uvicorn h11 httptools uvloop \
  fastapi==0.128.0 starlette==0.50.0 anyio sniffio annotated-doc openai==1.109.1 distro jiter pyyaml matplotlib contourpy cycler \
  fonttools kiwisolver pyparsing pillow python-dateutil
# fastapi and openai are pinned: later releases (fastapi 0.165 and openai 3.60 were the newest on 2026-12-03)
# import opentelemetry and httpx2, which the image lacks, so transformers serve exits at import.
mkdir -p .gpu/jbtf && cp .gpu/whl/pandas-* .gpu/jbtf/ && for w in typer asyncio_throttle docker pydantic- pydantic_core annotated_types \
  typing_inspection uvicorn fastapi starlette openai distro jiter sniffio httptools annotated_doc; do
  cp .gpu/slim/"$w"*.whl .gpu/jbtf/
done
(cd .gpu/deb && apt-get download prometheus)
cp -r "$DATA/prompts/ultrachat" .gpu/data/prompts/
cp -r "$DATA/models/Llama-3.2-1B-Instruct" "$DATA/models/Llama-3-tokenizer" .gpu/data/models/
# Gzipped (9 MB to 2 MB), so that .gpu/data and .gpu/jbtf travel in one call; `stash` unzips it there.
chmod -R u+w .gpu/data && gzip -f .gpu/data/models/Llama-3-tokenizer/tokenizer.json
du -sh .chunks/c0* .gpu/*
