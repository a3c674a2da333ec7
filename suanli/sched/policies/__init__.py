"""Scheduling policies, one small class per file, all behind `Policy` (see base.py)."""

from __future__ import annotations

from suanli.sched.policies.backfill import Backfill
from suanli.sched.policies.base import Hook, Policy, View
from suanli.sched.policies.elastic import ElasticGoodput
from suanli.sched.policies.fifo import Fifo
from suanli.sched.policies.ftf import FinishTimeFairness
from suanli.sched.policies.gavel import Gavel
from suanli.sched.policies.suanli import SuanliPolicy
from suanli.sched.policies.tiresias import Tiresias
from suanli.spec.cluster import FairShare
from suanli.spec.errors import SpecError

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (Fifo, Backfill, Tiresias, Gavel, FinishTimeFairness, SuanliPolicy, ElasticGoodput)
}


def make_policy(name: str, fair_shares: dict[str, float] | None = None) -> Policy:
    """A fresh policy object by name (policies keep per-run state, so never share one), with the
    queues' fair shares where given (a policy without fair share refuses them)."""
    if name not in POLICIES:
        raise SpecError(f"--policy: unknown policy {name!r}; one of {', '.join(POLICIES)}")
    policy = POLICIES[name]()
    if fair_shares:
        if not hasattr(policy, "fair_shares"):
            sharing = ", ".join(
                n for n, cls in POLICIES.items() if "fair_shares" in getattr(cls, "__dataclass_fields__", {})
            )
            raise SpecError(f"queues: fair_share is set but policy {name} has none; use one of {sharing}")
        policy.fair_shares = dict(fair_shares)
    return policy


def use_cluster_fair_share(policy: Policy, declared: FairShare) -> None:
    """The cluster YAML's fair share on a policy that has one: its queues' shares unless the service
    YAML already gave some (`make_policy`; those win as a whole, shares being relative weights), and
    its usage half-life. A policy without fair share ignores it: the cluster file describes the
    centre, whichever policy runs it."""
    if not hasattr(policy, "fair_shares"):
        return
    if not policy.fair_shares:
        policy.fair_shares = dict(declared.queues)
    if hasattr(policy, "usage_half_life_s"):
        policy.usage_half_life_s = declared.usage_half_life_s


__all__ = ["POLICIES", "Hook", "Policy", "View", "make_policy", "use_cluster_fair_share"]
