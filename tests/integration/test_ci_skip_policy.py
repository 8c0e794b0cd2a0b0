"""Under CI=true a skipped test fails the run unless its reason is on the allow-list
in tests/conftest.py; outside CI a skip is only reported."""

from __future__ import annotations

import pytest
from helpers import ROOT

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_missing_tool():
    pytest.skip("kubectl is not installed")

def test_gpu_only():
    pytest.skip("needs a GPU: TensorRT engines build on CUDA devices only")
"""


SKIPPED_MODULE = """
import pytest

pytest.importorskip("a_package_that_is_not_installed")


def test_never_collected():
    pass
"""


@pytest.fixture
def suite(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_skips=SKIPPING)
    return pytester


def test_a_module_skipped_while_collected_fails_the_run_under_ci(pytester, monkeypatch):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_module_skip=SKIPPED_MODULE, test_other="def test_passes():\n    pass\n")
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-q")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_module_skip.py: could not import 'a_package_that_is_not_installed'*"])


def test_an_unexplained_skip_fails_the_run_under_ci(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("-q")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*test_missing_tool: kubectl is not installed*"])
    assert "test_gpu_only:" not in result.stdout.str()  # on the allow-list


def test_outside_ci_a_skip_is_only_reported(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_subprocess("-q")
    assert result.ret == 0
    result.assert_outcomes(skipped=2)
