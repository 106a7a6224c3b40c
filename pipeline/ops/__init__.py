"""Operator and integrator tools: generating load, reading topics back."""
