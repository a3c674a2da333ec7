"""`suanli.sched`: jobs, cluster state, placement, policies, the live scheduler and the simulator."""
