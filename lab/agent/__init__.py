"""Programs the fault injector runs inside a lab container's network namespace (a sidecar container
sharing it); standard library only, since the node image has no pip."""
