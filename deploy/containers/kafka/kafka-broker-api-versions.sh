#!/bin/bash
# Stand-in for Kafka's tool of the same name, for healthchecks: exits 0 when the broker answers an
# ApiVersions request (what the real tool asks first). Usage: --bootstrap-server HOST:PORT
exec python3 - "$@" <<'PY'
import socket, struct, sys
args = sys.argv[1:]
server = args[args.index("--bootstrap-server") + 1] if "--bootstrap-server" in args else "localhost:9092"
host, _, port = server.split(",")[0].rpartition(":")
client = b"healthcheck"
# ApiVersions v0: api_key 18, version 0, correlation id 1, client id.
body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
with socket.create_connection((host or "localhost", int(port)), timeout=5) as s:
    s.sendall(struct.pack(">i", len(body)) + body)
    head = s.recv(10)
    size, correlation, error = struct.unpack(">iih", head[:10])
sys.exit(0 if correlation == 1 and error == 0 else 1)
PY
