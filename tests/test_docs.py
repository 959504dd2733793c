"""The README and docs/ cannot rot: every relative link resolves, and the README's code runs.

The curl lines and the nginx config are checked by tests/test_curl.py and tests/test_nginx.py,
the examples by tests/test_examples.py; this file checks the rest of what a newcomer follows.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from dataserve import HTTPDataServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```$", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def _links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return [m[1] for m in _LINK.finditer(text) if not re.match(r"[a-z]+:", m[1])]


def test_docs_are_the_pages_the_readme_guide_names() -> None:
    guide = README.read_text(encoding="utf-8").split("\n## Guide\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\]\((docs/[\w.]+\.md)\)", guide))
    present = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert named == present


def test_every_relative_link_resolves() -> None:
    links = [(page, link) for page in PAGES for link in _links(page)]
    assert len(links) > 2 * len(PAGES)
    for page, link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} names a missing file"
        if anchor:
            assert target.suffix == ".md", f"{page.name}: {link}"
            assert anchor in _anchors(target), f"{page.name}: {link} names a missing heading"


def _python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8").split(f"\n## {section}\n", 1)[1]
    text = text.split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)


def test_the_readme_in_brief_code_runs(tmp_path: Path) -> None:
    module_code, serve_code, client_code = _python_blocks("In brief")
    assert module_code.startswith("# points.py\n")
    path = tmp_path / "points.py"
    path.write_text(module_code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("readme_points", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)  # not put in sys.modules: nothing leaks
    spec.loader.exec_module(module)
    Points = module.Points

    # The serving line, as shown (a free port instead of 5001, then shut down).
    assert "port=5001" in serve_code
    namespace: dict[str, object] = {"Points": Points}
    exec(serve_code.replace("port=5001", "port=0"), namespace)
    shown = namespace["server"]
    assert isinstance(shown, HTTPDataServer)
    shown.shutdown()

    with HTTPDataServer(Points, port=0) as server:
        printed: list[tuple[object, ...]] = []
        namespace = {"print": lambda *args: printed.append(args)}
        code = client_code.replace("port=5001", f"port={server.port}")
        # Each commented result is what the line returns: check it, not just that it ran.
        lines = code.splitlines()
        checked = []
        for i, line in enumerate(lines):
            shown_result = re.search(r"^(\s*)(client\.send\(.*\))\s+# (\[[\d, ]*\])", line)
            if shown_result:
                indent, call, result = shown_result.groups()
                lines[i] = f"{indent}assert {call} == {result}"
                checked.append(result)
        assert checked == ["[10, 11, 12]"]
        exec(compile("\n".join(lines), "README In brief", "exec"), namespace)
        assert len(printed) == 1
        assert printed[0][0] == 404
        assert "no route for '/nope'" in str(printed[0][1])
