"""`make image`'s report: the image's size and each mesh process's start-up time in a container.

Starts a broker and a PostgreSQL cluster of its own (mesh_testing.servers, on free ports; or BENCH_BOOTSTRAP /
BENCH_DATABASE_URL), runs the topic and migration jobs, then starts every process at once, each in its own
hardened container, and prints how long each took from `podman run` to a 200 on /readyz, and how long it took
to stop on SIGTERM. Removes every container it started.

    .venv/bin/python deploy/containers/startup.py IMAGE
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import meshrun  # noqa: E402

from mesh_testing.servers import bench_stack  # noqa: E402

GRACE = 30.0  # the manifests' terminationGracePeriodSeconds


def main(image: str) -> int:
    print(f"image {image}: {meshrun.image_size(image) / 1e6:.0f} MB")
    with bench_stack() as (bootstrap, db_url):
        assert db_url is not None
        stack = meshrun.Stack(bootstrap, db_url.replace("postgresql://", "postgresql+psycopg://", 1))
        for job, command in (("topics-init", meshrun.PROVISION), ("migrate", meshrun.MIGRATE)):
            began = time.monotonic()
            done = meshrun.run_job(image, stack, job, command)
            if done.returncode != 0:
                print(f"{job} failed ({done.returncode}):\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            print(f"{job:18} ran in {time.monotonic() - began:5.1f} s")
        run_id = uuid.uuid4().hex[:8]
        names = list(meshrun.COMMANDS)
        containers: dict[str, str] = {}
        try:
            began = time.monotonic()
            for name in names:
                containers[name] = meshrun.start(image, stack, name, run_id)
            ready = meshrun.wait_ready(stack, containers, began)
            failed = 0
            for name in names:
                stopped = meshrun.stop(containers[name], GRACE)
                if name in ready:
                    print(f"{name:18} ready in {ready[name]:5.1f} s, stopped on SIGTERM in {stopped.seconds:4.1f} s "
                          f"(exit {stopped.exit_code})")
                else:
                    failed += 1
                    print(f"{name:18} NOT READY; its log:\n{meshrun.logs(containers[name])}")
            print("(all processes started at once on 2 cores; each alone starts faster)")
            return 1 if failed else 0
        finally:
            meshrun.remove(*containers.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "localhost/contract-mesh:dev"))
