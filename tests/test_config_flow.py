"""scripts/config_flow.py: which calls carry config, and what counts as re-entering a file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from scripts import config_flow
from tests.conftest import REPO

PACKAGE = {
    "__init__.py": "",
    "a.py": """
        import functools
        from pkg import b
        from pkg.c import Loader

        def entry(config, other):
            data = config.data
            b.first(data)                 # b
            helper(config)                # a again after b: a re-entry
            b.second(data.size)           # b again: a re-entry (a leaf value is config too)
            plan = b.make_plan(config)    # followed (config); its result is not config
            b.untouched(plan, other, 3)   # not followed
            for name, spec in config.sets.items():
                Loader(spec)              # c, through the class's __init__
            run = functools.partial(b.third, size=data.size)  # b, where the partial is made
            if config.bad:
                raise ValueError(b.message(config))  # not followed: a raise

        def helper(config):
            entry(config, None)           # a cycle: not followed again
        """,
    "b.py": """
        def first(data): pass
        def second(size): pass
        def make_plan(config): return 1
        def untouched(plan, other, n): pass
        def third(x, size): pass
        def message(config): return ""
        """,
    "c.py": """
        class Loader:
            def __init__(self, spec):
                self.load(spec)

            def load(self, spec):
                pass
        """,
}


@pytest.fixture
def package(tmp_path):
    for name, text in PACKAGE.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_tree_follows_config_and_counts_re_entries(package):
    tree = config_flow.analyse(package, "pkg/a.py:entry")
    calls = [(node.function.qualname, depth) for node, depth in config_flow.walk(tree)]
    assert calls == [("entry", 0), ("first", 1), ("helper", 1), ("second", 1), ("make_plan", 1),
                     ("Loader.__init__", 1), ("Loader.load", 2), ("third", 1)]
    # files a b a b b c c b: a once, b twice (after a, after c)
    assert config_flow.reentries(tree) == {
        "total": 3, "per_file": {"pkg/a.py": 1, "pkg/b.py": 2}, "calls": 7}
    assert "third  [pkg/b.py]  (line 15 of the caller) <- re-entry" in config_flow.render(tree)


def test_a_bad_entry_is_one_sentence(package):
    with pytest.raises(SystemExit, match="pkg/a.py defines no function 'nothing'"):
        config_flow.analyse(package, "pkg/a.py:nothing")
    with pytest.raises(SystemExit, match="expected FILE.py:FUNCTION"):
        config_flow.analyse(package, "pkg/missing.py:entry")


def test_it_runs_on_the_package():
    # A process of its own, as users run it: in the full suite, CPython 3.11.7's ast.parse once
    # failed here with "AST constructor recursion depth mismatch" (the state other tests left).
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "config_flow.py"), "--root",
                          str(REPO), "--entry", "multimix_jax/evaluate.py:evaluate", "--tree"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    counts = json.loads(out[out.index("{"):])
    assert counts["entry"] == "multimix_jax/evaluate.py:evaluate"
    assert counts["total"] == sum(counts["per_file"].values()) and counts["calls"] > 0
    assert out.startswith("evaluate  [multimix_jax/evaluate.py]")
