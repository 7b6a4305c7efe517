"""Simulated patrols: a fleet of officers moving between hot spots, for the demo and benchmarks."""
