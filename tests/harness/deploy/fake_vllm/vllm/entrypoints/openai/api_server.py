"""Stand-in for vLLM's OpenAI-compatible API server process, for the native-launch tests.

It takes vLLM's command line (`--model`, `--host`, `--port`, any other flag) and has vLLM's process
shape: this process plus a child that does the serving (vLLM's engine core; here `joulebench
mock-server`, which answers /health, /v1/models, /metrics...). On SIGTERM or SIGINT it stops its child
and exits, as vLLM does. Environment switches make it misbehave the ways a real server can:
  FAKE_VLLM_EXIT=N          print an error and exit with N before serving (a bad flag, no GPU, ...)
  FAKE_VLLM_HANG_ON_TERM=1  this process ignores SIGTERM and SIGINT (a shutdown that hangs)
  FAKE_VLLM_STRAY=1         also start a worker that ignores SIGTERM (stuck in a CUDA call, say)
  FAKE_VLLM_PIDS=FILE       write the pids of all its processes to FILE, space-separated
"""

import argparse
import os
import signal
import subprocess
import sys
import time

_STRAY = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args, others = parser.parse_known_args()
    sampler = os.environ.get("VLLM_USE_FLASHINFER_SAMPLER")
    print(f"fake vLLM: model={args.model} port={args.port} flags={others} sampler={sampler}", flush=True)
    if os.environ.get("FAKE_VLLM_EXIT"):
        print("ERROR fake vLLM: cannot start (FAKE_VLLM_EXIT)", flush=True)
        sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))
    hang = bool(os.environ.get("FAKE_VLLM_HANG_ON_TERM"))
    engine = subprocess.Popen(
        [sys.executable, "-m", "harness", "mock-server", "--host", args.host, "--port", str(args.port)]
    )
    children = [engine]
    if os.environ.get("FAKE_VLLM_STRAY"):
        children.append(subprocess.Popen([sys.executable, "-c", _STRAY]))
    if os.environ.get("FAKE_VLLM_PIDS"):
        with open(os.environ["FAKE_VLLM_PIDS"], "w") as f:
            f.write(" ".join(str(pid) for pid in [os.getpid(), *(child.pid for child in children)]))

    stopping = []

    def shutdown(signum, frame):
        # Only signal here: waiting on the child inside a handler that interrupted engine.wait()
        # would deadlock on Popen's internal lock.
        print(f"fake vLLM: signal {signum}, shutting down", flush=True)
        stopping.append(signum)
        engine.terminate()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN if hang else shutdown)
    code = engine.wait()
    while hang:  # a hung API process outlives its engine
        time.sleep(1)
    # On a stop signal: exit 0, leaving any stray worker behind (the launcher must not leave it running).
    sys.exit(0 if stopping else code)


if __name__ == "__main__":
    main()
