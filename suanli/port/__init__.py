"""`suanli port`: move a CUDA training script to another accelerator, and say what will not move.

Layer: just above `suanli.spec` (it reads the catalog), below the planner, the service and the CLI,
which call it. Importable without torch; only `suanli.port.shims` (imported by ported scripts) and
`suanli.port.check` (runs scripts in subprocesses) touch a device.
"""
