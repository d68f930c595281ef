"""How fast can a Faust agent go when it does nothing but write records? The ceiling for the validator.

    python services/invoice-validator/bench/faust_ceiling.py     # starts its own broker (BENCH_BOOTSTRAP to reuse)

For each N in (1, 4): 3,000 events of 8 KB; per event the agent sends 1 record and writes N-1 table
keys (each a changelog record), as the validator sent one verdict and wrote three tables per invoice
(one table since ADR 0005).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

EVENTS = 3000


def agent_main() -> None:
    import faust

    n_out, topic, rate_file = int(os.environ["N_OUT"]), os.environ["TOPIC"], Path(os.environ["RATE_FILE"])
    app = faust.App(f"ceiling-{uuid.uuid4().hex[:6]}", broker=f"kafka://{os.environ['BOOTSTRAP']}",
                    store="memory://", topic_partitions=6, web_enabled=False,
                    producer_max_batch_size=1_048_576, producer_linger=0.005)
    src = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    out = app.topic(topic + ".out", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    table = app.Table("t", default=None, partitions=6)
    state: dict[str, float] = {"n": 0}

    @app.agent(src)
    async def process(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            state.setdefault("t0", time.time())
            out.send_soon(key=event.key, value=event.value)
            for i in range(n_out - 1):
                table[f"{event.key!r}-{i}"] = event.value.decode()
            state["n"] += 1
            if state["n"] == EVENTS:
                rate_file.write_text(str(EVENTS / (time.time() - state["t0"])))

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


def main() -> None:
    if os.environ.get("N_OUT"):
        agent_main()
        return
    from confluent_kafka import Producer

    from mesh_testing import create_topics, wait_for

    server = None
    bootstrap = os.environ.get("BENCH_BOOTSTRAP")
    if not bootstrap:
        from mesh_testing.servers import KafkaServer

        server = KafkaServer.start()
        bootstrap = server.bootstrap
    try:
        for n_out in (1, 4):
            topic = f"ceiling-{uuid.uuid4().hex[:6]}"
            create_topics(bootstrap, [topic, topic + ".out"], partitions=6)
            producer = Producer({"bootstrap.servers": bootstrap})
            for i in range(EVENTS):
                producer.produce(topic, key=f"k{i % 500}".encode(), value=b'"' + b"x" * 8000 + b'"')
            producer.flush(30)
            rate_file = Path(f"/tmp/{topic}.rate")
            proc = subprocess.Popen([sys.executable, __file__], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "N_OUT": str(n_out), "TOPIC": topic,
                                         "BOOTSTRAP": bootstrap, "RATE_FILE": str(rate_file)})
            try:
                wait_for(lambda f=rate_file: f.exists() and f.read_text(), timeout=300, interval=0.5)
                print(f"RESULT {n_out} record(s) out per event: {float(rate_file.read_text()):,.0f} events/s")
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
