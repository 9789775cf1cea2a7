#!/bin/sh
# Runs dockerd as this container's main process; arguments go to dockerd (the storage driver).
set -eu
# cgroup v2: a cgroup with processes of its own cannot hand controllers down, so everything that
# runs here now moves into a child cgroup first; dockerd can then limit its containers' memory.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control
fi
exec dockerd --host unix:///var/run/docker.sock "$@"
