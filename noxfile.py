"""Development sessions: ``nox`` runs tests (every Python 3.11-3.13 present), the tests on the
lowest dependencies, typecheck and lint.

Opt-in sessions: ``nox -s soak`` (bounded load test), ``nox -s slow`` (2 GB streamed through
each side, memory measured), ``nox -s bench`` (benchmarks).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lowest", "typecheck", "lint"]
nox.options.default_venv_backend = "venv"

PYTHONS = ["3.11", "3.12", "3.13"]
TEST_DEPS = [
    "pytest>=8",
    "hypothesis>=6.100",
    "pytest-socket>=0.7",
    "requests>=2.31",
    "trustme>=1.1",
    "gunicorn>=21.2",
    "numpy>=1.24",
]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the installed package (soak tests excluded)."""
    session.install(".", *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """Run the tests against the lowest runtime dependencies pyproject.toml allows."""
    session.install("msgspec==0.18.6", "urllib3==2.0.2", *TEST_DEPS)
    session.install("--no-deps", ".")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def soak(session: nox.Session) -> None:
    """Run the bounded soak tests (many threads, restarts, resets; a few minutes at most)."""
    session.install(".", *TEST_DEPS)
    session.run("pytest", "-m", "soak", *session.posargs)


# typings/ needs a mypy that checks PEP 747 TypeForm by default (2.2 or later): with an older
# one, send()'s non-class type forms are Any or rejected and typings/ fails. Pinned, so that a
# new mypy's new errors arrive in a commit of their own.
MYPY = "mypy==2.4.1"


@nox.session(python=PYTHONS[0])
def slow(session: nox.Session) -> None:
    """Stream 2 GB up to disk and 2 GB back into a file; each process must stay under 100 MB
    of RSS above its baseline (figures printed). Needs about 4 GB of free space in the temp
    dir, removed afterwards; ``DATASERVE_SLOW_MB=256`` for a quicker run."""
    session.install(".", *TEST_DEPS)
    session.run("pytest", "-m", "slow", "-s", *session.posargs)


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/ and typings/ (user-style code against the public API)."""
    session.install(".", MYPY, "numpy")
    session.run("mypy", "--strict", "src", "typings", "examples")


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """Benchmarks against the stack's floor and the peers; pass --quick for a short run.

    The default is a full run (the 512 MiB file streamed through included) three times, the
    medians checked against SPEC §12's targets, written as JSON, Markdown and a chart.

    fastapi, uvicorn[standard] (httptools, uvloop) and httpx are for the ``FastAPI + uvicorn``
    row only: installed here, never runtime or test dependencies.
    """
    session.install(".", "requests", "matplotlib", "fastapi", "uvicorn[standard]", "httpx")
    args = session.posargs or [
        "--runs",
        "3",
        "--json",
        "benchmarks/results/latest.json",
        "--markdown",
        "benchmarks/results/latest.md",
        "--chart",
        "benchmarks/results/chart.png",
    ]
    session.run("python", "benchmarks/run.py", *args)
