"""The trainer: intern training (S4, S5) and the control plane (rollouts, promotion)."""
