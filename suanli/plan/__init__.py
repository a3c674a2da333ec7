"""Planner: the search over hardware and parallel layouts, heterogeneous plans, export."""
