#!/bin/sh
# Runs dockerd as this container's main process; arguments go to dockerd (the storage driver).
set -eu
# Not privileged (lab/cluster/hosts.py HOST_PRIVILEGES): /sys and the cgroup mounts come read-only.
# A cgroup v1 controller is a bind mount of this container's own cgroup: its flag is the mount's.
mount -o remount,rw /sys
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup
  # cgroup v2: a cgroup with processes of its own cannot hand controllers down, so everything that
  # runs here now moves into a child cgroup first; dockerd can then limit its containers' memory.
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control
else
  for controller in /sys/fs/cgroup/*; do
    if mountpoint -q "$controller"; then mount -o remount,bind,rw "$controller"; fi
  done
fi
# A host restarted after `docker kill` (kill-host) keeps this container's files: the pid files and
# run state of the dockerd and containerd it lost, which a machine's reboot clears from its /run.
# dockerd refuses to start over a pid file ("pid file found"), so they go first.
rm -rf /var/run/docker.pid /var/run/docker
exec dockerd --host unix:///var/run/docker.sock "$@"
