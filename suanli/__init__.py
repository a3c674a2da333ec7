"""Suanli (算力): plan, schedule, run and keep alive large-model training and HPC work on
heterogeneous AI clusters."""

__version__ = "0.1.0"
