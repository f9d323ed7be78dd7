"""The package's shape, which the confirmatory study builds on: functions a reader can hold in mind, and a runner
that sits below the science."""
import ast
import subprocess
import sys

from helpers.paths import ROOT

PAGE_MODULES = ("am_study", "sae_study", "compare_study", "answers", "atlas", "trajectory")


def test_no_function_in_the_package_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "helpers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long


def test_the_runners_and_the_book_import_no_page_module():
    """The study runner, the one-process runner and the book read what the pages wrote (their files), never the
    pages' code: a change to a page cannot break the runner that reports it."""
    code = ("import sys, helpers.study, helpers.headless, helpers.book; "
            "print(' '.join(m for m in sys.modules if m.startswith('helpers.')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split())
    assert "helpers.book" in modules and not modules & {f"helpers.{m}" for m in PAGE_MODULES}, modules
