"""GPU power: the NVML sidecar, its simulated backend, and the readers that bring energy series back."""
