"""Training runtime: device backends as data, the training loop, MFU and goodput metrics."""
