"""ha-lab: a docker-compose lab for the Rancher server HA install guide's claims.

Nothing here contacts Docker at import time; the simulated server (`lab.server`) runs inside the
node image and imports nothing else from this package.
"""

__version__ = "0.1.0"
