"""The repository stands alone: its method document exists, nothing cites a document outside
the repository, and every ``(docs/multimix.md, SECTION)`` citation names a real section."""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
METHOD_DOC = REPO / "docs" / "multimix.md"
CITING = ("multimix_jax", "configs", "scripts", "tests", "README.md")
OUTSIDE_DOCS = re.compile(r"method\.md|conventions\.md|shared/docs")
CITATION = re.compile(r"docs/multimix\.md,\s+([^)]*)\)")


def _text_files():
    """(path, text) of every source and document that may cite, this test file excepted."""
    for name in CITING:
        path = REPO / name
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if (f.is_file() and f.suffix in (".py", ".md", ".sh", ".ipynb")
                    and f.name != "test_docs.py"):
                yield f, f.read_text(encoding="utf-8")


def _sections() -> set[str]:
    """Heading texts of docs/multimix.md, also without a trailing parenthesis ('(Table 2)')."""
    names = set()
    for line in METHOD_DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            names.update({title, re.sub(r"\s*\(.*\)$", "", title)})
    return names


def test_no_citation_of_documents_outside_the_repository():
    offenders = [f"{f.relative_to(REPO)}:{n}" for f, text in _text_files()
                 for n, line in enumerate(text.splitlines(), 1)
                 if OUTSIDE_DOCS.search(line)]
    assert not offenders, f"cite docs/multimix.md instead: {offenders}"


def test_every_cited_section_exists():
    sections = _sections()
    missing = []
    for f, text in _text_files():
        for match in CITATION.finditer(text):
            for cited in re.split(r";\s*", " ".join(match.group(1).split())):
                if cited not in sections:
                    missing.append(f"{f.relative_to(REPO)}: {cited!r}")
    assert not missing, f"no such section in docs/multimix.md: {missing}"
