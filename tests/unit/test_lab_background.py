"""A mission stage's faults run in a thread beside it (the e2e test's): their failure is
raised when the stage is done, and told beside the stage's own error when both fail (the
fault is then often the cause)."""

from __future__ import annotations

import pytest

from lab.mission.background import beside


def fault() -> None:
    raise ValueError("st-1 did not come back")


def test_a_failed_fault_is_raised_after_the_stage() -> None:
    with pytest.raises(ValueError, match="st-1 did not come back"), beside(fault):
        pass


def test_a_failed_stage_tells_the_fault_that_failed_beside_it() -> None:
    with pytest.raises(RuntimeError) as raised, beside(fault):
        raise RuntimeError("orch.download timed out")
    assert raised.value.__notes__ == ["and beside it: ValueError('st-1 did not come back')"]


def test_no_work_beside_is_no_thread() -> None:
    with beside(None):
        pass
