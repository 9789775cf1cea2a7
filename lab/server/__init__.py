"""The simulated Rancher 1.x HA server node (runs inside the `halab/node` image).

It imports nothing from the rest of `lab`: only `lab/__init__.py` and this package are copied
into the image. Modules, by responsibility:

- profiles: rancher-1.0 (as released) and tuned node behaviour; config: environment settings
- supervisor: the container's main process, running ZooKeeper and the server (restarting it)
- state: the HA state machine; heap: the heap-pressure model
- zkserver: this host's ZooKeeper member; coord: kazoo session, locks, fencing, session loss, watches
- pool, db: the bounded connection pool (MySQLdb, else PyMySQL) and the worker threads blocking work runs on
- changesets, migrations: schema bootstrap under the change-log lock; cluster: membership
- resources, gdapi, inputs, store: the v1 API's types, shapes, validation and SQL
- processes: process_instance rows, execution under ZooKeeper locks, replay
- cache: the read cache kept coherent through ZooKeeper watches; auth: basic auth
- agents: host registration and check-ins (the flow is in its docstring)
- api, management, metrics, listener: the HTTP servers and serving them
- node: wiring and scheduled tasks; main: entry point (uvloop where installed, glibc's trim threshold)
"""
