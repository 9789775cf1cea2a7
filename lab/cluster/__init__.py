"""One lab as a compose project: topology, compose file, images, TLS, state directory, pre-flight,
lifecycle (up, down, status), probes, and the Docker wrapper they share."""
