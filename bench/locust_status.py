"""Locust clients that poll one job's status, as a dashboard or a CLI waiting on a job does.

Run by ``bench/reliability.py`` (``locust -f bench/locust_status.py --headless ...``) with the job
id, the API key and the polling interval in the environment. A response other than 200 with the
job's id counts as an error.
"""

from __future__ import annotations

import os

from locust import constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser

JOB_ID = os.environ["HARDNEG_LOAD_JOB"]
HEADERS = {"Authorization": f"Bearer {os.environ['HARDNEG_LOAD_KEY']}"}
PACE_SECONDS = float(os.environ.get("HARDNEG_LOAD_PACE", "1.0"))


class StatusPoller(FastHttpUser):
    wait_time = constant_pacing(PACE_SECONDS)

    @task
    def poll(self) -> None:
        with self.client.get(
            f"/v1/jobs/{JOB_ID}", headers=HEADERS, name="GET /v1/jobs/{job_id}", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif response.json().get("id") != JOB_ID:
                response.failure("another job's status")
