"""``make test`` keeps each module's tests on one pytest-xdist worker (``--dist loadgroup``, tests/conftest.py):
module fixtures and the tiny export are built once. pytest-xdist marks a grouped test by suffixing its node id
with ``@<group>``; a pytest release that stops honouring the suffix (9.2 did) silently spreads every module
over the workers and rebuilds those fixtures in each, so this test fails instead."""

from __future__ import annotations

import os

import pytest


def test_a_test_run_by_loadgroup_workers_carries_its_modules_group(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") or not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only under pytest-xdist's loadgroup distribution (make test)")
    assert request.node.nodeid.endswith("@tests/test_xdist_groups.py"), (
        f"node id {request.node.nodeid!r} carries no xdist group: this pytest / pytest-xdist pair ignores "
        "xdist_group, so make test rebuilds module fixtures on every worker (pin a pytest that keeps item._nodeid)"
    )
