"""Serves the local model through llama.cpp's OpenAI-compatible server (PyPI xllamacpp).

usage: llm-server.py MODEL.gguf [--port N] [--alias NAME] [--ctx N] [--parallel N]

Prints `listening <url>` on stdout once the model is loaded, then serves until SIGTERM/SIGINT or
until stdin closes (so a parent that dies takes the server with it). Loopback only.
"""

import argparse
import os
import signal
import sys
import threading

import xllamacpp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--alias", default="smollm2-135m-instruct")
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.model_alias = {args.alias}
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.watch_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    os._exit(0)


if __name__ == "__main__":
    main()
