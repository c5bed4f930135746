"""The client of the per-node inference server (see :mod:`include.inference.server`).

Kept free of numpy and OpenVINO so that a task talking to a warm server pays only for the
socket round trip: embeddings cross the socket as packed float32 bytes and come back as
lists (:meth:`InferenceClient.embed_rows`) or, on request, as a numpy array.
"""

from __future__ import annotations

import array
import logging
import os
import sys
from collections.abc import Sequence
from multiprocessing.connection import Client
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.inference._errors import InferenceServerError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from include.inference._types import Classification, RerankHit
    from include.inference.hardware import HardwareInfo

log = logging.getLogger(__name__)

SOCKET_ENV = "AGENTFLOW_INFERENCE_SOCKET"
FAMILY = "AF_UNIX"


def pack_vectors(vectors: Any) -> dict[str, Any]:
    """A float32 ``[count, dim]`` array as ``{"count", "dim", "data"}`` (little-endian bytes)."""
    count, dim = (int(vectors.shape[0]), int(vectors.shape[1])) if len(vectors.shape) == 2 else (0, 0)
    return {"count": count, "dim": dim, "data": vectors.astype("<f4").tobytes()}


def unpack_rows(packed: dict[str, Any]) -> list[list[float]]:
    """The rows of :func:`pack_vectors`' output, as lists of floats, without numpy."""
    values = array.array("f")
    values.frombytes(packed["data"])
    if sys.byteorder != "little":
        values.byteswap()
    dim = packed["dim"]
    return [values[i * dim : (i + 1) * dim].tolist() for i in range(packed["count"])]


class InferenceClient:
    """Talk to an :class:`~include.inference.server.InferenceServer`; one connection per call.

    :param socket_path: the server's socket.
    """

    def __init__(self, socket_path: str | Path) -> None:
        self.socket_path = str(socket_path)

    def call(self, op: str, **args: Any) -> Any:
        """Send one request and return its result, re-raising the server's error.

        :raises OSError: the server cannot be reached.
        :raises InferenceServerError: the connection broke mid-request.
        """
        conn = Client(self.socket_path, family=FAMILY)
        with conn:
            conn.send({"op": op, **args})
            try:
                answer = conn.recv()
            except EOFError as err:
                raise InferenceServerError(
                    f"inference server at {self.socket_path} closed the connection"
                ) from err
        if answer.get("ok"):
            return answer["result"]
        raise answer["error"]

    def ping(self) -> None:
        """Check that the server answers (``OSError`` if not)."""
        self.call("ping")

    def embed_rows(self, model: str, texts: Sequence[str], truncate: bool | None = None) -> list[list[float]]:
        """Embeddings in input order, as lists (no numpy needed).

        :raises InvalidTextError: some texts are invalid; ``results`` holds the valid rows as lists.
        """
        return unpack_rows(self.call("embed", model=model, texts=list(texts), truncate=truncate))

    def embed(self, model: str, texts: Sequence[str], truncate: bool | None = None) -> NDArray[np.float32]:
        """Embeddings in input order, as a float32 array."""
        import numpy as np

        packed = self.call("embed", model=model, texts=list(texts), truncate=truncate)
        flat = np.frombuffer(packed["data"], dtype="<f4").astype(np.float32)
        return flat.reshape(packed["count"], packed["dim"])

    def classify(
        self, classifier: str, texts: Sequence[str], truncate: bool | None = None
    ) -> list[Classification]:
        """Labels in input order (see :meth:`include.inference.backend.LocalBackend.classify`)."""
        result: list[Classification] = self.call(
            "classify", classifier=classifier, texts=list(texts), truncate=truncate
        )
        return result

    def rerank(
        self, model: str, query: str, documents: Sequence[str], top_k: int | None = None
    ) -> list[RerankHit]:
        """Documents by cosine to the query, best first."""
        result: list[RerankHit] = self.call(
            "rerank", model=model, query=query, documents=list(documents), top_k=top_k
        )
        return result

    def hardware(self, model: str) -> HardwareInfo:
        """What ``model`` runs on in the server, precision included."""
        result: HardwareInfo = self.call("hardware", model=model)
        return result

    def stats(self) -> dict[str, Any]:
        """The server's counters (``loads``, ``hits``, ``requests``, ...)."""
        result: dict[str, Any] = self.call("stats")
        return result

    def shutdown(self) -> None:
        """Ask the server to stop."""
        self.call("shutdown")


def connect(socket_path: str | None = None) -> InferenceClient | None:
    """A client of the node's server if its socket answers, else ``None``.

    :param socket_path: the socket; ``AGENTFLOW_INFERENCE_SOCKET`` if ``None``.
    """
    path = socket_path or os.environ.get(SOCKET_ENV)
    if not path:
        return None
    if not Path(path).exists():
        log.info("no inference server socket at %s; running in-process", path)
        return None
    client = InferenceClient(path)
    try:
        client.ping()
    except OSError as err:
        log.warning("inference server at %s does not answer (%s); running in-process", path, err)
        return None
    return client
