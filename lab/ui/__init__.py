"""`halab ui`: a live page of one lab on 127.0.0.1: the topology as a picture with each node's
ZooKeeper mode, HA and load-balancer state and restarts, the cuts and faults held, the load's
requests and errors a second; faults started and healed from it, guarded by a per-lab token."""
