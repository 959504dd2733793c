"""Every program in examples/ runs: each server in a subprocess on a free port, then its client,
whose printed output is checked line by line. Every server is stopped (SIGTERM) by its test and
must stop cleanly."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port, put, raw_exchange

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
README = Path(__file__).resolve().parent.parent / "README.md"
STARTUP_TIMEOUT = 30.0  # the server prints its URL once it accepts connections
RUN_TIMEOUT = 60.0  # a client, or a server's shutdown
SERVING = re.compile(r"dataserve: serving \S+ at (\S+)")


def example_env(port: int, **extra: str) -> dict[str, str]:
    """The test's environment with the example's port, UTF-8 output and no stray token."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATASERVE_TOKEN", "DATASERVE_PORT")}
    env.update(DATASERVE_PORT=str(port), PYTHONIOENCODING="utf-8", **extra)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # what run_http_server stops cleanly on, like Ctrl-C
    try:
        return proc.wait(RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(RUN_TIMEOUT)


@contextlib.contextmanager
def serving(args: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Iterator[str]:
    """Run ``python *args`` until it prints where it serves; yield that URL; stop it.

    On a normal exit, also check that the server stopped cleanly: exit code 0, its "stopped"
    line, no traceback.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "server.out", logs / "server.err"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=env, stdout=out_file, stderr=err_file
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:  # bounded by the deadline
            match = SERVING.search(out.read_text(encoding="utf-8"))
            if match:
                break
            if proc.poll() is not None:
                pytest.fail(f"{args} exited with {proc.returncode}: {err.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{args} printed no URL within {STARTUP_TIMEOUT} s: {err.read_text()}")
            time.sleep(0.05)
        yield match.group(1)
    finally:
        code = _stop(proc)
    stdout, stderr = out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "dataserve: stopped" in stdout


def run_client(args: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """Run a client example to its end; its output lines."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


# -- seed --------------------------------------------------------------------------------------


def test_seed_example_server_and_client_print_the_seed_results(tmp_path: Path) -> None:
    port = free_port()
    env = example_env(port)
    seed = EXAMPLES / "seed"
    with serving(["server.py"], seed, env, tmp_path) as url:
        assert url == f"http://127.0.0.1:{port}"
        assert run_client(["client.py"], seed, env) == ["[1, 2, 3, 4, 5, 6]", "2"]


def test_seed_server_module_is_served_by_the_cli_on_its_port(tmp_path: Path) -> None:
    # The module's guard keeps its own run_http_server from starting when the CLI imports it:
    # without the guard, the import would serve on DATASERVE_PORT and never return.
    cli_port, module_port = free_port(), free_port()
    seed = EXAMPLES / "seed"
    args = ["-m", "dataserve", "serve", "server:MyDataHandler", "--port", str(cli_port)]
    with serving(args, seed, example_env(module_port), tmp_path) as url:
        assert url == f"http://127.0.0.1:{cli_port}"
        output = run_client(["client.py"], seed, example_env(cli_port))
        assert output == ["[1, 2, 3, 4, 5, 6]", "2"]


# -- dataset -----------------------------------------------------------------------------------


def expected_dataset_output() -> list[str]:
    """What dataset_client.py must print, worked out here from readings.csv itself."""
    with (EXAMPLES / "dataset" / "readings.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    week = rows[0:21]
    warmest = max(week, key=lambda row: float(row["temperature_c"]))
    hill = [row for row in rows if row["station"] == "hill"]
    mean = round(statistics.fmean(float(row["temperature_c"]) for row in hill), 2)
    rain = round(sum(float(row["rain_mm"]) for row in hill), 1)
    r = rows[42]
    y, m, d = (int(part) for part in r["day"].split("-"))
    return [
        f"{len(rows)} readings",
        f"first week: 21 readings, {week[0]['day']} to {week[-1]['day']}",
        f"warmest: {float(warmest['temperature_c'])} °C at {warmest['station']} on "
        f"{warmest['day']}",
        f"hill: mean {mean} °C, rain {rain} mm",
        f"reading 42: Reading(id=42, station={r['station']!r}, day=datetime.date({y}, {m}, {d}), "
        f"temperature_c={float(r['temperature_c'])}, rain_mm={float(r['rain_mm'])})",
        "reading 100000: not found (404)",
    ]


@pytest.mark.parametrize(
    "server_args",
    [
        pytest.param(["dataset_server.py"], id="script"),
        pytest.param(["-m", "dataserve", "serve", "dataset_server:Readings", "--port"], id="cli"),
    ],
)
def test_dataset_example_serves_typed_slices_summaries_and_lookups(
    tmp_path: Path, server_args: list[str]
) -> None:
    port = free_port()
    env = example_env(port)
    here = EXAMPLES / "dataset"
    if server_args[-1] == "--port":
        server_args = [*server_args, str(port)]
    with serving(server_args, here, env, tmp_path) as url:
        assert url == f"http://127.0.0.1:{port}"
        output = run_client(["dataset_client.py"], here, env)
    expected = expected_dataset_output()
    assert expected[0] == "300 readings"  # the CSV shipped beside the example
    assert output[:6] == expected
    assert len(output) == 7
    # The last line: a station the route's Literal annotation does not allow is a 400.
    assert output[6].startswith("summary of 'moon': refused (400): ")
    assert "'moon'" in output[6].removeprefix("summary of 'moon': ")


# -- custom codec ------------------------------------------------------------------------------


def test_custom_codec_example_sends_fractions_and_shows_a_415(tmp_path: Path) -> None:
    port = free_port()
    env = example_env(port)
    here = EXAMPLES / "custom_codec"
    with serving(["fraction_server.py"], here, env, tmp_path):
        output = run_client(["fraction_client.py"], here, env)
        # A body the codec cannot read is the client's mistake: 400, and the server serves on.
        for body in (b"five", b"1/0", b"\xff"):
            reply = raw_exchange(port, put("/half", body, "application/x-fraction"))
            assert reply.status == 400, (body, reply.body)
        reply = raw_exchange(port, put("/half", b"5/3", "application/x-fraction"))
        assert (reply.status, reply.body) == (200, b"5/6")
    assert output[:2] == ["mean of [1, 2, 2]: 5/3", "half of 5/3: 5/6"]
    assert len(output) == 3
    prefix = "msgpack to a server without it: refused (415): "
    assert output[2].startswith(prefix)
    assert "application/x-fraction" in output[2]  # the detail lists what the server decodes


# -- NumPy -------------------------------------------------------------------------------------


def test_numpy_example_serves_read_only_views_and_takes_arrays(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    port = free_port()
    env = example_env(port)
    here = EXAMPLES / "numpy_server"
    with serving(["array_server.py"], here, env, tmp_path):
        output = run_client(["array_client.py"], here, env)
    assert output[:3] == [
        "shape: [10000, 64]",
        "rows 40-44: shape (5, 64), dtype float32",
        "writeable: False",
    ]
    assert output[3].startswith("writing to it: ValueError: ")
    assert "read-only" in output[3]
    assert output[4:] == ["nearest to a nudged row 42: 42"]


# -- TLS and token -----------------------------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """server.pem, server.key and client.pem (the CA), made as the example's docstring says."""
    pytest.importorskip("trustme")
    folder = tmp_path / "certs"
    folder.mkdir()
    subprocess.run(
        [sys.executable, "-m", "trustme", "-d", str(folder), "-q"],
        check=True,
        capture_output=True,
        timeout=RUN_TIMEOUT,
    )
    return folder


def test_tls_token_example_answers_the_token_and_refuses_others(
    tmp_path: Path, certificates: Path
) -> None:
    port = free_port()
    token = secrets.token_urlsafe()
    env = example_env(port, DATASERVE_TOKEN=token)
    here = EXAMPLES / "tls_token"
    server_args = [
        "tls_server.py",
        str(certificates / "server.pem"),
        str(certificates / "server.key"),
    ]
    with serving(server_args, here, env, tmp_path / "logs") as url:
        assert url == f"https://127.0.0.1:{port}"
        output = run_client(["tls_client.py", str(certificates / "client.pem")], here, env)
    assert output[0] == "hello, TLS"
    assert len(output) == 3
    assert output[1].startswith("a wrong token: refused (401): ")
    assert output[2].startswith("no token: refused (401): ")
    logs = (tmp_path / "logs" / "server.out").read_text() + (
        tmp_path / "logs" / "server.err"
    ).read_text()
    assert token not in "\n".join(output) + logs


@pytest.mark.parametrize("script", ["tls_server.py", "tls_client.py"])
def test_tls_token_example_without_a_token_exits_saying_what_to_set(script: str) -> None:
    done = subprocess.run(
        [sys.executable, script],
        cwd=EXAMPLES / "tls_token",
        env=example_env(free_port()),
        capture_output=True,
        encoding="utf-8",
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 1
    assert f"{script}: set DATASERVE_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


# -- streaming ---------------------------------------------------------------------------------


def test_streaming_example_stores_a_file_and_returns_it_whole(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "store"
    env = example_env(port, DATASERVE_STORE=str(store))
    here = EXAMPLES / "streaming"
    with serving(["files_server.py"], here, env, tmp_path / "logs"):
        output = run_client(["files_client.py"], here, env)
        names = [path.name for path in store.iterdir()]
    assert len(names) == 1  # stored under its SHA-256, the temporary part renamed
    assert len(names[0]) == 64
    assert output == [
        f"stored 64 MiB as {names[0][:16]}... (progress 0 to 67108864)",
        "got 64 MiB back into copy.bin: the same bytes",
        "the store holds {'<it>': 67108864}",
        "a file it does not hold: None",
    ]


# -- the READMEs -------------------------------------------------------------------------------


def test_every_example_is_linked_from_both_readmes() -> None:
    folders = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == [
        "async_fanout",
        "custom_codec",
        "dataset",
        "numpy_server",
        "seed",
        "streaming",
        "tls_token",
    ]
    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## Examples\n", 1)[1].split("\n## ", 1)[0]
    for name in folders:
        assert f"({name}/)" in index, name
        assert f"(examples/{name}/)" in section, name
    # Every file an example README command runs exists.
    for script in re.findall(r"python (\S+\.py)", index):
        assert any(EXAMPLES.glob(f"*/{script}")), script


# -- asyncio fan-out ---------------------------------------------------------------------------


def test_async_fanout_example_fans_out_lookups_from_one_loop(tmp_path: Path) -> None:
    port = free_port()
    env = example_env(port)
    here = EXAMPLES / "async_fanout"
    with serving(["fanout_server.py"], here, env, tmp_path):
        output = run_client(["fanout_client.py"], here, env)
    prices = [round((i * 37 % 1000) / 10 + 1, 1) for i in range(200)]
    cheapest = min(range(200), key=lambda i: prices[i])
    assert output == [
        "200 items fetched concurrently, in order: item-0 .. item-199",
        f"total price: {round(sum(prices), 1)}",
        f"cheapest: item-{cheapest} at {prices[cheapest]}",
        "2 of 4 found; missing: [1000, 1001]",
    ]
