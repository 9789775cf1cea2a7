"""Shared foundations with no Docker and no lab behind them: errors, YAML validation, durations,
waiting, the repository's paths."""
