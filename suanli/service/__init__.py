"""The platform service: HTTP API, durable job store, control loop, executors, dashboard, metrics.

Start it with `suanli up`; see docs/service.md."""
