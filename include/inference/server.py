"""A small per-node inference server: compiled models stay warm across Airflow tasks.

Why a server. Airflow 3 runs every task instance in a fresh process that the task SDK's
supervisor forks for it, and the process exits when the task ends; a model cached in the
task process (the process-wide :class:`~include.inference.runtime.ModelPool`) therefore
dies with the task, so every task would convert-check, read and compile the model again
(0.1-0.3 s of compile and 0.15 s of imports here, more for bigger models) and hold its own
copy of the weights. Loading before the fork (in the Celery worker parent) does not survive
either: the supervisor forks a fresh child per task and OpenVINO's thread pools do not
survive a fork safely. A long-lived process per worker node that owns the models does:
tasks send it texts over a Unix socket and get embeddings back, models are compiled once
per node, memory is bounded by the pool's LRU, and there is one set of OpenVINO threads
pinned to the node's CPUs instead of one per concurrent task.

Protocol: ``multiprocessing.connection`` on a Unix socket (``AGENTFLOW_INFERENCE_SOCKET``).
A request is a dict ``{"op": "embed" | "classify" | "rerank" | "hardware" | "stats" |
"ping" | "shutdown", ...}``; the answer is ``{"ok": True, "result": ...}`` or ``{"ok":
False, "error": <exception>}`` for errors of the project's taxonomy (re-raised by the
client, so an :class:`InvalidTextError` keeps its per-index errors and valid results).
Messages are pickled, so the socket is created in a folder only its owner can enter
(mode 0700): only processes of the same user (the Airflow worker) can talk to it.

Run it next to the Celery worker of the ``intel`` queue::

    python -m include.inference.server --socket /run/agentflow/inference.sock --preload all-minilm-l6-v2

SIGTERM or SIGINT (or a ``shutdown`` request) stops it cleanly: it stops accepting,
closes the pool and removes the socket. Operators use it when the socket exists and fall
back to in-process inference otherwise (:func:`include.inference.backend.get_backend`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from include.errors import AgentFlowError
from include.inference._errors import InferenceServerError, InvalidTextError
from include.inference.backend import LocalBackend
from include.inference.client import FAMILY, InferenceClient, pack_vectors
from include.inference.runtime import ModelPool

__all__ = ["InferenceClient", "InferenceServer", "main"]

log = logging.getLogger(__name__)


class InferenceServer:
    """Serve inference requests on a Unix socket from one warm :class:`ModelPool`.

    :param socket_path: where to listen; its folder is created with mode 0700.
    :param pool: the models; a new pool of ``max_models`` if ``None``.
    :param max_models: the pool's bound when ``pool`` is ``None``.
    :param preload: model names to compile before accepting requests.
    """

    def __init__(
        self,
        socket_path: str | Path,
        pool: ModelPool | None = None,
        max_models: int = 2,
        preload: Sequence[str] = (),
    ) -> None:
        self.socket_path = Path(socket_path)
        self.pool = pool or ModelPool(max_models=max_models)
        self.backend = LocalBackend(self.pool)
        self.preload = list(preload)
        self.requests = 0
        self.errors = 0
        self.started_at = time.time()
        self._listener: Listener | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def bind(self) -> None:
        """Create the socket (removing a stale one; refusing if a live server owns it).

        :raises InferenceServerError: another server answers on the socket.
        """
        folder = self.socket_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        if self.socket_path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                log.info("removing stale inference socket %s", self.socket_path)
                self.socket_path.unlink()
            else:
                raise InferenceServerError(f"an inference server already listens on {self.socket_path}")
            finally:
                probe.close()
        for name in self.preload:
            log.info("inference server: preloading %s", name)
            self.pool.get(name)
        self._listener = Listener(str(self.socket_path), family=FAMILY)
        log.info("inference server listening on %s (pid %s)", self.socket_path, os.getpid())

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; one thread per connection."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        try:
            while not self._stopping.is_set():
                try:
                    conn = self._listener.accept()
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                if self._stopping.is_set():
                    conn.close()
                    break
                threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()
        finally:
            self._close()

    def start(self) -> threading.Thread:
        """Bind, then serve in a background thread (for tests and embedding)."""
        self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="inference-server", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, close the pool, remove the socket; safe to call twice."""
        if not self._stopping.is_set():
            self._stopping.set()
            with contextlib.suppress(OSError):  # wake the accept() call
                Client(str(self.socket_path), family=FAMILY).close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._stopped.wait(timeout)

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()  # also unlinks the socket file
            self._listener = None
        self.socket_path.unlink(missing_ok=True)
        self.pool.close()
        log.info("inference server stopped: %s", self.stats())
        self._stopped.set()

    # --- requests --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: the pool's ``loads``/``hits``/``evictions``, ``requests``, ``errors``."""
        return {
            "backend": "server",
            "pid": os.getpid(),
            "socket": str(self.socket_path),
            "uptime_s": round(time.time() - self.started_at, 3),
            "requests": self.requests,
            "errors": self.errors,
            **self.pool.stats(),
        }

    def _serve_connection(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    return
                stop = isinstance(request, dict) and request.get("op") == "shutdown"
                conn.send(self.handle(request))
                if stop:
                    threading.Thread(target=self.shutdown, daemon=True).start()
                    return

    def handle(self, request: Any) -> dict[str, Any]:
        """Answer one request (see the module docstring)."""
        with self._lock:
            self.requests += 1
        try:
            if not isinstance(request, dict) or "op" not in request:
                raise ValueError("a request is a dict with an 'op'")
            op = request["op"]
            if op == "embed":
                vectors = self.backend.embed(request["model"], request["texts"], request.get("truncate"))
                result: Any = pack_vectors(vectors)
            elif op == "classify":
                result = self.backend.classify(
                    request["classifier"], request["texts"], request.get("truncate")
                )
            elif op == "rerank":
                result = self.backend.rerank(
                    request["model"], request["query"], request["documents"], request.get("top_k")
                )
            elif op == "hardware":
                result = self.backend.hardware(request["model"])
            elif op == "stats":
                result = self.stats()
            elif op in ("ping", "shutdown"):
                result = "pong" if op == "ping" else "stopping"
            else:
                raise ValueError(f"unknown op {op!r}")
            return {"ok": True, "result": result}
        except Exception as err:
            with self._lock:
                self.errors += 1
            if isinstance(err, InvalidTextError) and err.results is not None:
                # plain lists on the wire: the client needs no numpy to read them
                rows = [r.tolist() if hasattr(r, "tolist") else r for r in err.results]
                err = InvalidTextError(err.model, err.errors, rows)
            if not isinstance(err, AgentFlowError | ValueError | TypeError | KeyError):
                log.exception("inference server: request failed")
            return {"ok": False, "error": _portable(err)}


def _portable(err: Exception) -> Exception:
    """The error itself if it pickles cleanly, else an :class:`InferenceServerError` with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return InferenceServerError(f"{type(err).__name__}: {err}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m include.inference.server``: run a server until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", default=os.environ.get("AGENTFLOW_INFERENCE_SOCKET"), required=False)
    parser.add_argument(
        "--max-models", type=int, default=int(os.environ.get("AGENTFLOW_INFERENCE_MAX_MODELS", "2"))
    )
    parser.add_argument(
        "--preload", action="append", default=[], help="model to compile at start (repeatable)"
    )
    args = parser.parse_args(argv)
    if not args.socket:
        parser.error("--socket (or AGENTFLOW_INFERENCE_SOCKET) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = InferenceServer(args.socket, max_models=args.max_models, preload=args.preload)

    def stop(signum: int, _frame: object) -> None:
        log.info("inference server: signal %s, stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
