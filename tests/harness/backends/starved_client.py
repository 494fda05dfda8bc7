"""Run as a script: send N requests at once to a server from a process left only SPARE free
descriptors (its RLIMIT_NOFILE soft limit lowered to what it has open plus SPARE), and print each
request's status and error as JSON lines. Every socket() beyond SPARE really fails with EMFILE.

    python starved_client.py URL TRANSPORT N SPARE
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

from harness.backends import Prompt, make_client, perform, resolve_target
from harness.records import RequestRecord

PROMPT = Prompt(prompt="hi", messages=None, max_tokens=16, ignore_eos=True, temperature=None)


async def main(url: str, transport: str, n: int, spare: int) -> None:
    api = (await resolve_target(url)).api  # before the limit: detecting the target needs sockets too
    body = api.encode(PROMPT, True)
    async with make_client(url, pool=n, timeout_s=10, transport=transport) as client:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        open_now = len(os.listdir("/proc/self/fd")) - 1  # less the one listdir holds while it reads
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + spare, hard))

        async def one(i: int) -> RequestRecord:
            rec = RequestRecord(i, "a", i, "p", warmup=False, api=api.name, stream=True)
            rec.sent_ns = time.monotonic_ns()
            await perform(client, api, body, rec, 10.0)
            return rec

        recs = await asyncio.gather(*(one(i) for i in range(n)))
    for rec in recs:
        print(json.dumps({"status": rec.status, "error": rec.error}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
