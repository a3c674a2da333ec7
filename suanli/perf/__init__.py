"""Performance model: FLOPs, memory, compute, communication, pipeline and the step estimate."""
