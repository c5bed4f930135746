"""The per-node inference server over a real Unix socket, with a fake engine behind the pool."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from include.inference import InferenceServerError, InvalidTextError, UnknownModelError
from include.inference.backend import LocalBackend, get_backend
from include.inference.registry import ModelSpec
from include.inference.runtime import ModelPool
from include.inference.server import InferenceClient, InferenceServer


@pytest.fixture
def socket_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="afinf-", dir="/tmp"))  # AF_UNIX paths must be short
    yield folder / "run" / "inference.sock"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server(
    socket_path: Path, registry_file: Path, fake_loader: Callable[[ModelSpec], Any]
) -> Iterator[InferenceServer]:
    pool = ModelPool(max_models=2, loader=fake_loader, registry_path=registry_file)
    srv = InferenceServer(socket_path, pool=pool)
    srv.start()
    yield srv
    srv.shutdown()


def test_two_requests_load_the_model_once(server: InferenceServer, socket_path: Path) -> None:
    client = InferenceClient(socket_path)
    first = client.embed("fake-a", ["hello there", "hi"])
    second = client.embed("fake-a", ["another one"])
    assert first.shape == (2, 4)
    assert second.shape == (1, 4)
    assert first[:, 0].tolist() == [4.0, 3.0]  # input order survives the round trip
    stats = client.stats()
    assert stats["backend"] == "server"
    assert (stats["loads"], stats["hits"], stats["requests"]) == (1, 1, 3)
    assert oct(socket_path.parent.stat().st_mode)[-3:] == "700"


def test_rows_cross_without_numpy(server: InferenceServer, socket_path: Path) -> None:
    client = InferenceClient(socket_path)
    rows = client.embed_rows("fake-a", ["hello there", "hi"])
    assert rows == client.embed("fake-a", ["hello there", "hi"]).tolist()
    assert [(r[0], r[2], r[3]) for r in rows] == [(4.0, 4.0, 1.0), (3.0, 4.0, 1.0)]  # input order
    assert all(type(x) is float for row in rows for x in row)


def test_errors_cross_the_socket_intact(server: InferenceServer, socket_path: Path) -> None:
    client = InferenceClient(socket_path)
    with pytest.raises(InvalidTextError) as caught:
        client.embed("fake-a", ["ok", ""])
    assert caught.value.errors == {1: "empty text"}
    assert caught.value.results is not None
    assert caught.value.results[1] is None
    first = caught.value.results[0]
    assert isinstance(first, list)  # a plain list on the wire, no numpy needed
    assert first[0] == 3.0
    with pytest.raises(UnknownModelError, match="fake-a"):
        client.embed("nope", ["x"])
    with pytest.raises(ValueError, match="unknown op"):
        client.call("launch")
    assert client.stats()["errors"] == 3


def test_shutdown_is_clean(server: InferenceServer, socket_path: Path) -> None:
    client = InferenceClient(socket_path)
    model = server.pool.get("fake-a")
    client.shutdown()
    server.shutdown()
    assert not socket_path.exists()
    assert getattr(model, "closed", False)
    with pytest.raises(OSError, match=r"No such file|refused"):
        client.ping()


def test_a_stale_socket_is_replaced_and_a_live_one_refused(
    socket_path: Path, registry_file: Path, fake_loader: Callable[[ModelSpec], Any]
) -> None:
    socket_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()  # the file stays, nobody listens
    pool = ModelPool(loader=fake_loader, registry_path=registry_file)
    srv = InferenceServer(socket_path, pool=pool)
    srv.start()
    try:
        InferenceClient(socket_path).ping()
        with pytest.raises(InferenceServerError, match="already listens"):
            InferenceServer(
                socket_path, pool=ModelPool(loader=fake_loader, registry_path=registry_file)
            ).bind()
    finally:
        srv.shutdown()


def test_get_backend_prefers_the_server_and_falls_back(
    server: InferenceServer, socket_path: Path, tmp_path: Path
) -> None:
    assert isinstance(get_backend(str(socket_path)), InferenceClient)
    assert isinstance(get_backend(str(tmp_path / "absent.sock")), LocalBackend)
