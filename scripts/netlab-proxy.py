#!/usr/bin/env python3
"""A TCP delay proxy: test equipment for scripts/netlab.sh, not part of Tributary.

The kernel here has no netem qdisc, so the round trip of a slow link is made by this proxy: it listens on the central
host's end of a remote host's link and forwards each connection to a broker on loopback, holding every chunk for
--delay-ms in each direction (so a round trip gains twice that). An optional --rate caps each direction of each
listener (tbf on the link does the shaping netlab.sh sets up; this cap is for links without it).

    netlab-proxy.py --listen 10.231.0.1:6389=127.0.0.1:6389 [--listen ...] --delay-ms 75 [--rate-bits 50000000]
                    [--stats FILE]

Every second (and at exit) FILE gets a JSON object: for each listener, the bytes that went to the remote side
(`to_remote`) and came from it (`from_remote`), and the connections accepted.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

# Bytes held per direction of one connection before the proxy stops reading (backpressure, as a link's buffer).
WINDOW = 4 << 20


class Listener:
    def __init__(self, spec):
        try:
            listen, target = spec.split("=")
            self.host, port = listen.rsplit(":", 1)
            self.port = int(port)
            self.target_host, target_port = target.rsplit(":", 1)
            self.target_port = int(target_port)
        except ValueError:
            raise SystemExit(f"netlab-proxy: --listen '{spec}' is not HOST:PORT=TARGETHOST:TARGETPORT")
        self.spec = spec
        self.to_remote = 0
        self.from_remote = 0
        self.connections = 0


class Pacer:
    """A token bucket in bits per second, shared by the connections of one listener and direction."""

    def __init__(self, rate_bits):
        self.rate = rate_bits / 8.0
        self.available = 0.0
        self.updated = time.monotonic()

    async def take(self, count):
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self.available = min(self.available + (now - self.updated) * self.rate, self.rate / 10)
            self.updated = now
            if self.available >= 0:
                self.available -= count
                return
            await asyncio.sleep(-self.available / self.rate)


async def pump(reader, writer, delay, pacer, count):
    """Copies reader to writer, each chunk written `delay` seconds after it was read, in order."""
    queue = asyncio.Queue()
    held = {"bytes": 0}
    room = asyncio.Event()
    room.set()

    async def deliver():
        while True:
            due, chunk = await queue.get()
            if chunk is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await pacer.take(len(chunk))
            writer.write(chunk)
            await writer.drain()
            count(len(chunk))
            held["bytes"] -= len(chunk)
            if held["bytes"] < WINDOW:
                room.set()
        if writer.can_write_eof():
            writer.write_eof()

    delivering = asyncio.ensure_future(deliver())
    try:
        while True:
            await room.wait()
            chunk = await reader.read(65536)
            if not chunk:
                break
            queue.put_nowait((time.monotonic() + delay, chunk))
            held["bytes"] += len(chunk)
            if held["bytes"] >= WINDOW:
                room.clear()
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0, None))
    try:
        await delivering
    except (ConnectionError, OSError):
        pass


async def serve(listener, delay, rate_bits):
    up, down = Pacer(rate_bits), Pacer(rate_bits)

    async def connection(remote_reader, remote_writer):
        listener.connections += 1
        try:
            target_reader, target_writer = await asyncio.open_connection(listener.target_host, listener.target_port)
        except OSError as error:
            print(f"netlab-proxy: {listener.spec}: cannot reach the target: {error}", file=sys.stderr)
            remote_writer.close()
            return

        def sent(n):
            listener.to_remote += n

        def received(n):
            listener.from_remote += n

        await asyncio.gather(pump(remote_reader, target_writer, delay, up, received),
                             pump(target_reader, remote_writer, delay, down, sent),
                             return_exceptions=True)
        for writer in (remote_writer, target_writer):
            writer.close()

    return await asyncio.start_server(connection, listener.host, listener.port, reuse_address=True)


def write_stats(path, listeners):
    if not path:
        return
    stats = {l.spec: {"to_remote": l.to_remote, "from_remote": l.from_remote, "connections": l.connections} for l in listeners}
    with open(path + ".tmp", "w") as f:
        json.dump(stats, f)
    os.replace(path + ".tmp", path)


async def main():
    parser = argparse.ArgumentParser(description="TCP delay proxy for netlab.sh")
    parser.add_argument("--listen", action="append", required=True, help="HOST:PORT=TARGETHOST:TARGETPORT")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay added in each direction")
    parser.add_argument("--rate-bits", type=float, default=0, help="cap per listener and direction, bits per second (0: none)")
    parser.add_argument("--stats", default="", help="JSON file of byte counts, rewritten every second")
    options = parser.parse_args()
    if options.delay_ms < 0:
        raise SystemExit(f"netlab-proxy: --delay-ms {options.delay_ms} is negative")
    listeners = [Listener(spec) for spec in options.listen]
    servers = [await serve(l, options.delay_ms / 1000.0, options.rate_bits) for l in listeners]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    print(f"netlab-proxy: {len(servers)} listeners, {options.delay_ms} ms each way", file=sys.stderr, flush=True)
    while not stop.is_set():
        write_stats(options.stats, listeners)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    write_stats(options.stats, listeners)
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
