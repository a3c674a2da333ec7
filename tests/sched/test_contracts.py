"""The policy contract: optional hooks are declared in `Policy.hooks`, and the scheduler calls exactly
the declared ones; Gavel's allocation LP either solves or fails the run with one line."""

from __future__ import annotations

import numpy as np
import pytest

from suanli.sched.job import JobState
from suanli.sched.policies import POLICIES, Hook, Policy, View, make_policy
from suanli.sched.policies import gavel as gavel_module
from suanli.sched.policies.gavel import gavel_allocation
from suanli.sched.scheduler import Scheduler
from suanli.sched.simulator import simulate
from suanli.spec.errors import PlanInfeasible, SuanliError
from tests.sched.conftest import job, make_cluster


class Recording(Policy):
    """FIFO order, preemptive so that `rank` may be used; records every hook call."""

    name = "recording"
    preemptive = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    def order(self, view: View) -> list[JobState]:
        return self.rank(view.active(), view)

    def rank(self, states: list[JobState], view: View) -> list[JobState]:
        self.calls.append(f"rank:{len(states)}")
        return sorted(states, key=lambda s: (s.job.submit_s, s.job.job_id))

    def on_round(self, view: View) -> None:
        self.calls.append("on_round")

    def on_bound(self, state: JobState, view: View) -> None:
        self.calls.append(f"on_bound:{state.job.job_id}")


class Declared(Recording):
    hooks = frozenset({Hook.RANK, Hook.ON_ROUND, Hook.ON_BOUND})


class Undeclared(Recording):
    hooks = frozenset()


def _two_ticks(policy: Policy) -> list[str]:
    sched = Scheduler(make_cluster({"a": (1, 8)}), policy)
    sched.submit(job("x", 0, 2, 100.0))
    sched.tick(0)
    sched.submit(job("y", 1, 2, 100.0))
    sched.tick(1)
    return policy.calls


def test_a_declared_hook_is_called_and_an_undeclared_one_never():
    declared = _two_ticks(Declared())
    assert declared.count("on_round") == 2
    assert declared.count("on_bound:x") == 2 and declared.count("on_bound:y") == 1
    # the second tick ranks only the pending job: the shortcut a declared `rank` allows
    assert [c for c in declared if c.startswith("rank")] == ["rank:1", "rank:1"]
    undeclared = _two_ticks(Undeclared())
    assert not any(c.startswith("on_") for c in undeclared)
    # only through its own `order`: a full pass over both active jobs
    assert [c for c in undeclared if c.startswith("rank")] == ["rank:1", "rank:2"]


def test_declaring_a_hook_without_its_method_is_refused_naming_the_policy():
    class Broken(Policy):
        name = "broken"
        hooks = frozenset({Hook.ON_BOUND})

        def order(self, view: View) -> list[JobState]:
            return view.pending()

    with pytest.raises(TypeError, match=r"policy broken: declares hook\(s\) on_bound"):
        Scheduler(make_cluster({"a": (1, 8)}), Broken())


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_shipped_policy_defines_what_it_declares(name):
    policy = make_policy(name)
    for hook in policy.hooks:
        assert callable(getattr(policy, hook.value))
    Scheduler(make_cluster({"a": (1, 8)}), policy)


@pytest.mark.parametrize("objective", ["max_sum", "max_min"])
def test_an_infeasible_gavel_lp_is_one_line_naming_the_policy(objective):
    # a negative capacity leaves no X >= 0 with gpus·X <= capacity
    with pytest.raises(PlanInfeasible) as caught:
        gavel_allocation(np.array([[1.0]]), np.array([1.0]), np.array([-1.0]), objective)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"gavel: the {objective} allocation LP did not solve (status 2")


def test_a_failed_gavel_lp_stops_the_simulation_with_one_line(monkeypatch):
    class Failed:
        status, message, x = 4, "Numerical difficulties encountered.", None

    monkeypatch.setattr(gavel_module, "linprog", lambda *a, **k: Failed())
    jobs = [job(j, 0, 4, {"a": 100.0, "b": 150.0}) for j in "ab"]  # both best on a, either on b: the LP
    with pytest.raises(SuanliError) as caught:
        simulate(make_cluster({"a": (1, 4), "b": (1, 4)}), make_policy("gavel"), jobs)
    assert str(caught.value) == (
        "gavel: the max_sum allocation LP did not solve (status 4: Numerical difficulties encountered.)"
    )
    assert caught.value.http_status == PlanInfeasible.http_status


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_round_before_any_job_arrives_decides_nothing(name):
    """A live service reaches round boundaries while its queue is still empty (the replay steps at
    the last one before an idle gap): every policy's round hook accepts a pass with no job."""
    policy = make_policy(name)
    view = View(360.0, {}, make_cluster({"a": (1, 8), "b": (1, 4)}))
    if Hook.ON_ROUND in policy.hooks:
        policy.on_round(view)
    assert policy.order(view) == []
