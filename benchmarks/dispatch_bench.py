"""Workflow dispatch benchmark: N agents, M workflows of K steps, agents that finish at once.

Runs a real ``opscore serve`` subprocess on the chosen backend and, in this process,
N contract-speaking agents behind one HTTP server. Each agent, on receiving a task,
reports ``idle`` with a result (and ``active`` first with --report-active). Prints
steps/s and the dispatch latency: from the moment an agent sends the ``idle`` report
that completes a step until the next task reaches that agent.

    python benchmarks/dispatch_bench.py --storage sqlite --agents 8 --workflows 50 --steps 10
    python benchmarks/dispatch_bench.py --storage redis://127.0.0.1:6379/15
    python benchmarks/dispatch_bench.py --storage redis://127.0.0.1:6379/15 --servers 2

With ``--servers N`` (Redis only) N server processes share the storage: agent i
reports to server i mod N and workflows are triggered round-robin, so every process
completes tasks and dispatches.

Not a test: run it by hand on a quiet machine. It needs no network beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Agents:
    opscore_urls: list[str]
    report_active: bool
    client: httpx.AsyncClient
    last_idle_sent: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    received: int = 0
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    failed_reports: list[str] = field(default_factory=list)
    last_arrival: float = 0.0

    def server_of(self, agent_id: str) -> str:
        index = int(agent_id.rsplit("-", 1)[1])
        return self.opscore_urls[index % len(self.opscore_urls)]

    async def report(self, agent_id: str, state: str, details: dict[str, Any]) -> None:
        body = {
            "agentId": agent_id,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "state": state,
            "details": details,
        }
        response = await self.client.post(
            f"{self.server_of(agent_id)}/v1/opscore/agent/{agent_id}/state", json=body
        )
        if response.is_error:
            self.failed_reports.append(f"{response.status_code} {response.text[:300]}")

    async def work(self, agent_id: str, message: dict[str, Any]) -> None:
        if self.report_active:
            await self.report(agent_id, "active", {})
        self.last_idle_sent[agent_id] = time.perf_counter()
        await self.report(agent_id, "idle", {"echo": message["payload"].get("step")})

    async def task_endpoint(self, request: Request) -> JSONResponse:
        agent_id = request.path_params["agent_id"]
        arrived = time.perf_counter()
        sent = self.last_idle_sent.pop(agent_id, None)
        if sent is not None:
            self.latencies_ms.append((arrived - sent) * 1000)
        self.received += 1
        self.last_arrival = arrived
        message = await request.json()
        job = asyncio.create_task(self.work(agent_id, message))
        self.pending.add(job)
        job.add_done_callback(self.pending.discard)
        return JSONResponse({"status": "accepted"}, status_code=202)


def workflow(steps: int) -> dict[str, Any]:
    tasks = []
    for i in range(steps):
        tasks.append(
            {
                "taskId": f"s{i}",
                "agentCapability": "bench",
                "parameters": {"step": i},
                "nextTaskId": f"s{i + 1}" if i + 1 < steps else None,
            }
        )
    return {
        "id": f"bench-{steps}",
        "name": "benchmark",
        "version": "1",
        "taskDefaults": {"completionTimeoutS": 60, "retryBackoffS": 0.1},
        "tasks": tasks,
    }


async def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="opscore-bench-"))
    storage = args.storage
    if storage == "sqlite":
        storage = f"sqlite:///{data_dir / 'bench.db'}"
    elif storage == "memory":
        storage = "memory://"
    port = free_port()
    env = {
        **os.environ,
        "OPSCORE_STORAGE_URL": storage,
        "OPSCORE_DATA_DIR": str(data_dir),
        "OPSCORE_API_KEY": API_KEY,
        "OPSCORE_LOG_LEVEL": "debug" if args.server_log else "warning",
    }
    if storage.startswith("redis"):
        import redis

        redis.Redis.from_url(storage).flushdb()
    ports = [port, *(free_port() for _ in range(args.servers - 1))]
    servers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "opscore",
            "serve",
            "--port",
            str(p),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(f"{args.server_log}.{p}", "wb") if args.server_log else subprocess.DEVNULL,  # noqa: SIM115, ASYNC230
        )
        for p in ports
    ]
    opscore_urls = [f"http://127.0.0.1:{p}" for p in ports]
    opscore_url = opscore_urls[0]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(
        max_connections=args.agents * 2, max_keepalive_connections=args.agents * 2
    )
    try:
        for url in opscore_urls:
            await wait_ready(url)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
            agents = Agents(opscore_urls, args.report_active, client)
            agent_port = free_port()
            app = Starlette(
                routes=[Route("/agents/{agent_id}/task", agents.task_endpoint, methods=["POST"])]
            )
            config = uvicorn.Config(app, port=agent_port, log_level="warning", access_log=False)
            agent_server = uvicorn.Server(config)
            serving = asyncio.create_task(agent_server.serve())
            while not agent_server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await asyncio.sleep(0.05)
            for i in range(args.agents):
                agent_id = f"bench-agent-{i}"
                (
                    await client.post(
                        f"{opscore_url}/v1/opscore/agents",
                        json={
                            "agentId": agent_id,
                            "name": agent_id,
                            "capabilities": ["bench"],
                            "contactEndpoint": f"http://127.0.0.1:{agent_port}/agents/{agent_id}/task",
                            "transport": "direct",
                        },
                    )
                ).raise_for_status()
                await agents.report(agent_id, "idle", {})
            (
                await client.post(f"{opscore_url}/v1/opscore/workflows", json=workflow(args.steps))
            ).raise_for_status()
            started = time.perf_counter()
            session_ids = []
            for n in range(args.workflows):
                response = await client.post(
                    f"{opscore_urls[n % len(opscore_urls)]}/v1/opscore/sessions",
                    json={"workflowDefinitionId": f"bench-{args.steps}"},
                )
                response.raise_for_status()
                session_ids.append(response.json()["sessionId"])
            total = args.workflows * args.steps
            deadline = time.monotonic() + args.timeout_s
            while agents.received < total and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            # The last steps' completions: wait until every session says completed.
            for session_id in session_ids:
                while time.monotonic() < deadline:
                    body = (
                        await client.get(f"{opscore_url}/v1/opscore/sessions/{session_id}")
                    ).json()
                    if body["status"] in {"completed", "failed", "cancelled"}:
                        break
                    await asyncio.sleep(0.05)
            # Throughput counts until the last task reached its agent; the status checks
            # that follow are not part of it.
            elapsed = agents.last_arrival - started
            completed = 0
            for session_id in session_ids:
                body = (await client.get(f"{opscore_url}/v1/opscore/sessions/{session_id}")).json()
                completed += body["status"] == "completed"
                if body["status"] != "completed":
                    print(f"session {session_id} is {body['status']}:")
                    for task in body["tasks"]:
                        attempts = [
                            (a["attempt"], a["agentId"], a["status"]) for a in task["attempts"]
                        ]
                        print(f"  {task['taskId']} {task['status']} {task['agentId']} {attempts}")
            lat = sorted(agents.latencies_ms)
            p50 = statistics.median(lat) if lat else float("nan")
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
            print(
                f"storage={args.storage} agents={args.agents} workflows={args.workflows} "
                f"steps={args.steps} report_active={args.report_active} servers={args.servers}"
            )
            print(
                f"tasks received={agents.received}/{total} "
                f"sessions completed={completed}/{args.workflows} "
                f"elapsed={elapsed:.2f}s steps/s={agents.received / elapsed:.1f}"
            )
            print(f"dispatch latency ms: p50={p50:.2f} p99={p99:.2f} (n={len(lat)})")
            if agents.failed_reports:
                print(f"{len(agents.failed_reports)} state reports failed, first: ")
                print("  " + "\n  ".join(agents.failed_reports[:5]))
            agent_server.should_exit = True
            await serving
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                await asyncio.wait_for(server.wait(), timeout=10)
            except TimeoutError:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", default="sqlite", help="memory, sqlite, or a redis:// URL")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--report-active", action="store_true", help="agents report active first")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument(
        "--servers", type=int, default=1, help="server processes sharing the storage (Redis)"
    )
    parser.add_argument(
        "--server-log", help="write each server's log lines to this file, suffixed .<port>"
    )
    args = parser.parse_args()
    if args.servers < 1 or (args.servers > 1 and not args.storage.startswith("redis")):
        parser.error("--servers above 1 needs a redis:// storage")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
