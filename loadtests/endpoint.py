"""One endpoint, for benchmarks: `GET HALAB_ENDPOINT` (default `/v1/projects`) in a loop.

Without `HALAB_RATE` each user sends as fast as it gets answers (Locust's peak rate, compared
with wrk's); with it each user paces itself to that many requests per second, so two targets
can be compared at the same offered load. Recorded like every Locust request (recording.py).
"""

from __future__ import annotations

import os

import recording  # noqa: F401  (registers the history hook)
from locust import FastHttpUser, constant, constant_throughput, task

PATH = os.environ.get("HALAB_ENDPOINT", "/v1/projects")
RATE = float(os.environ.get("HALAB_RATE", "0"))


class EndpointUser(FastHttpUser):
    host = os.environ.get("HALAB_HTTP_URL", "http://127.0.0.1:80")
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    @task
    def get(self) -> None:
        self.client.get(PATH, name=PATH)
