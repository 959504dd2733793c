"""The curl lines of docs/cli.md, each run with the real ``curl`` against a real server.

The lines (and the handler module they call) are read from docs/cli.md, so the docs cannot
drift from what works: each command is followed there by a comment saying what it prints,
what file it writes, or how it exits, and that is what is checked here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataserve import HTTPDataClient

from .conftest import free_port
from .test_wsgi import _has_module, gunicorn

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI_DOC = DOCS / "cli.md"
DOC_ADDRESS = "127.0.0.1:5001"
CURL = shutil.which("curl")

# Under CI=true (.ci/run installs curl) a missing curl fails these tests instead of skipping.
pytestmark = pytest.mark.skipif(
    CURL is None and os.environ.get("CI") != "true",
    reason="curl is not installed (.ci/run installs it)",
)


@dataclass
class Line:
    command: str
    prints: str | None = None  # exact stdout
    exit_code: int = 0
    file: str | None = None  # a file the command writes ...
    holds: str | None = None  # ... and what it holds


_EXPECTATION = re.compile(
    r"# (?:exits (?P<code>\d+) and )?prints (?P<prints>.*)|# (?P<file>\S+) holds (?P<holds>.*)"
)


def fenced_block(text: str, after: str, language: str) -> str:
    """The first fenced block of ``language`` after the line ``after``."""
    start = text.index(after + "\n")
    match = re.compile(rf"^```{language}\n(.*?)^```$", re.S | re.M).search(text, start)
    assert match is not None, f"no ```{language} block after {after!r}"
    return match[1]


def readme_curl_lines() -> list[Line]:
    lines: list[Line] = []
    for raw in fenced_block(CLI_DOC.read_text(), "## curl", "sh").splitlines():
        expected = _EXPECTATION.fullmatch(raw)
        if expected is None:
            assert not raw.startswith("#"), f"docs/cli.md curl block: unparsed comment {raw!r}"
            lines.append(Line(raw))
            continue
        line = lines[-1]
        if expected["prints"] is not None:
            line.prints = expected["prints"]
            line.exit_code = int(expected["code"] or 0)
        else:
            line.file, line.holds = expected["file"], expected["holds"]
    return lines


def readme_handler_module() -> str:
    return fenced_block(
        CLI_DOC.read_text(),
        "A module that defines a handler (and does not start a server when imported):",
        "python",
    )


def test_readme_shows_each_kind_of_curl_call() -> None:
    commands = [line.command for line in readme_curl_lines()]
    curls = [c for c in commands if "curl " in c]
    assert any("application/json" in c for c in curls)
    assert any("text/plain" in c for c in curls)
    assert any(re.search(r"-T \w", c) for c in curls)  # a file upload, with Content-Length
    assert any("| curl" in c and "-T -" in c for c in curls)  # a pipe: chunked
    assert any("-o " in c for c in curls)  # a download into a file
    checked = [line for line in readme_curl_lines() if "curl " in line.command]
    assert all(line.prints is not None or line.holds is not None for line in checked)


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "myserver.py").write_text(readme_handler_module())
    return tmp_path


@pytest.fixture(params=["dataserve serve", "gunicorn"])
def address(request: pytest.FixtureRequest, handler_dir: Path) -> Iterator[str]:
    """The handler of docs/cli.md served by ``dataserve serve`` (its command) or gunicorn."""
    port = free_port()
    if request.param == "gunicorn":
        if not _has_module("gunicorn"):
            pytest.skip("gunicorn is not installed")
        (handler_dir / "app.py").write_text(
            "from dataserve.wsgi import make_app\nfrom myserver import MyDataHandler\n"
            "app = make_app(MyDataHandler)\n"
        )
        with gunicorn(handler_dir, f"127.0.0.1:{port}"):
            with HTTPDataClient(port=port) as client:
                client.wait_ready(30)
            yield f"127.0.0.1:{port}"
        return
    command = [sys.executable, "-m", "dataserve", "serve", "myserver:MyDataHandler"]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=handler_dir,
        env={"PATH": "", "PYTHONPATH": str(handler_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with HTTPDataClient(port=port) as client:
            client.wait_ready(30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        finally:
            proc.kill()
            proc.wait(10)


def test_each_readme_curl_line_does_what_the_readme_says(
    address: str, handler_dir: Path, tmp_path: Path
) -> None:
    # A .curlrc (read before the line's own options) turns on the trace, to see the
    # 100-continue exchange, and makes curl wait for the 100 rather than send after 1 s.
    curl_home = tmp_path / "curl-home"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text("verbose\nexpect100-timeout = 120\n")
    env = {"PATH": str(Path(str(CURL)).parent) + ":/usr/bin:/bin", "CURL_HOME": str(curl_home)}
    chunked = continued = 0
    for line in readme_curl_lines():
        command = line.command.replace(DOC_ADDRESS, address)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=handler_dir,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        trace = result.stderr.decode(errors="replace")
        assert result.returncode == line.exit_code, (command, trace)
        if line.prints is not None:
            assert result.stdout.decode() == line.prints, command
        if line.file is not None:
            assert (handler_dir / line.file).read_text() == line.holds, command
        if "> Transfer-Encoding: chunked" in trace:
            chunked += 1
        if "> Expect: 100-continue" in trace:
            assert "< HTTP/1.1 100 Continue" in trace, command
            continued += 1
    assert chunked == 1  # the `curl -T -` line streamed its pipe chunked
    assert continued >= 1
