"""The project's own suite uses the shipped plugin (lab.pytest_plugin, loaded by its entry point)."""
