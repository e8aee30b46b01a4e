"""Child process that runs one llama.cpp OpenAI-compatible server (``python -I _llama_child.py ...``).

Run as a script in isolated mode, so it imports only the standard library and ``xllamacpp``.

Started and supervised by :class:`botfactory.inference.local.LocalModelServer`. It dies with its parent:
``PR_SET_PDEATHSIG`` on Linux, and everywhere a thread that exits when the parent's end of the stdin
pipe closes (which happens however the parent dies). SIGTERM and SIGINT exit at once: the server holds
no state worth flushing.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
from types import FrameType

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)

    def watch_stdin() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, name="parent-watch", daemon=True).start()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="botfactory-llama-child")
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Load the model, serve until signalled or orphaned. Returns the exit status on load failure."""
    args = _parse(argv)
    os.dup2(2, 1)  # one unbuffered stream, so the parent sees the last lines even after a crash
    _die_with_parent(args.parent_pid)

    import xllamacpp as xlc  # heavy: imported only in the child

    params = xlc.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = 1  # one request at a time: two cores cannot do better, and the slot keeps its prompt cache
    params.cache_prompt = True
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [args.host]
    params.port = args.port
    params.ui = False
    params.endpoint_slots = False
    # chat_template stays unset: with use_jinja a value is taken as a literal template; the GGUF carries its own.
    try:
        server = xlc.Server(params)
    except Exception as exc:
        print(f"botfactory-llama-child: server failed to start: {exc}", file=sys.stderr, flush=True)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Replaces llama.cpp's own handlers, which would end its loop but leave this process waiting.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"botfactory-llama-child: serving on {server.listening_address}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
