"""The Python SDK: a typed client of the gpufleet REST API.

    from gpufleet.client import Client
    c = Client.from_env()
    job = c.submit({"command": ["python", "train.py"], "gpus": 2, "time_limit": "2h"})
    print(c.job(job.id).state)
"""

from gpufleet.client.http import ApiError, Client, LogPage, ServerUnreachable, find_server

__all__ = ["ApiError", "Client", "LogPage", "ServerUnreachable", "find_server"]
