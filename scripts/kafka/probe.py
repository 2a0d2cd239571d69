"""Is a Kafka broker serving on HOST:PORT? Standard library only (runs before any virtualenv exists).

Asks the broker, over the Kafka wire protocol, for its API versions and then for cluster metadata, and succeeds
once the metadata lists at least one broker: a KRaft broker only accepts client connections after it has caught up
with the metadata log and been unfenced, so this means "ready for producers and consumers".

    python3 scripts/kafka/probe.py [--host 127.0.0.1] [--port 9092] [--wait SECONDS] [--pid PID]

Exit status: 0 ready; 1 not ready (within --wait); 2 the port answers but not as Kafka; 3 --pid exited while waiting.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18


class NotKafka(Exception):
    pass


def _request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"propensity-probe"
    # Request header v1: api_key, api_version, correlation_id, client_id (int16-length string).
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _read(sock, 4))[0]
    if not 4 <= size <= 64 * 1024 * 1024:
        raise NotKafka(f"implausible response size {size}")
    response = _read(sock, size)
    if struct.unpack(">i", response[:4])[0] != correlation_id:
        raise NotKafka("response correlation id does not match")
    return response[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def brokers_in_metadata(host: str, port: int, timeout: float = 3.0) -> int:
    """Number of brokers the cluster metadata lists; raises OSError if nothing answers, NotKafka if not Kafka."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        # ApiVersions v0 is answered by every broker version; it says which Metadata versions this one speaks.
        body = _request(sock, API_VERSIONS, 0, 1, b"")
        error, count = struct.unpack(">hi", body[:6])
        if error != 0 or not 0 < count < 1000:
            raise NotKafka(f"ApiVersions answered error {error}, {count} APIs")
        ranges = {}
        for i in range(count):
            key, low, high = struct.unpack(">hhh", body[6 + 6 * i : 12 + 6 * i])
            ranges[key] = (low, high)
        if API_METADATA not in ranges:
            raise NotKafka("no Metadata API")
        low, high = ranges[API_METADATA]
        # v4..v8 share one non-flexible layout; brokers since 1.0 speak v4, and 4.x dropped v0-v3.
        version = max(low, 4)
        if version > min(high, 8):
            raise NotKafka(f"Metadata versions {low}-{high}: none this probe speaks")
        # Metadata request: no topics (empty array), allow_auto_topic_creation=false; v8 adds two booleans.
        request = struct.pack(">ib", 0, 0) + (struct.pack(">bb", 0, 0) if version >= 8 else b"")
        body = _request(sock, API_METADATA, version, 2, request)
        # Response v4..v8: throttle_time_ms, then the brokers array.
        _throttle, brokers = struct.unpack(">ii", body[:8])
        return brokers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited
    except (OSError, IndexError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--wait", type=float, default=0.0, help="keep trying for this many seconds")
    parser.add_argument("--pid", type=int, help="give up as soon as this process has exited")
    args = parser.parse_args()
    deadline = time.monotonic() + args.wait
    last = "no attempt"
    while True:
        try:
            if brokers_in_metadata(args.host, args.port) > 0:
                return 0
            last = "metadata lists no broker yet"
        except NotKafka as exc:
            print(f"{args.host}:{args.port} answers, but not as a Kafka broker: {exc}", file=sys.stderr)
            return 2
        except (OSError, struct.error) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if args.pid is not None and not _alive(args.pid):
            print(f"process {args.pid} exited before {args.host}:{args.port} was ready ({last})", file=sys.stderr)
            return 3
        if time.monotonic() >= deadline:
            if args.wait:
                print(f"{args.host}:{args.port} not ready after {args.wait:g} s ({last})", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
