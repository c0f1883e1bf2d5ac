"""RFC 6455 checks of the stream server from an independent client: Python's `websockets`
library (its protocol implementation is not ours). Driven by tests/e2e/websockets_protocol.rs,
which starts the node, writes blocks and asserts on what this script prints.

Every check prints JSON lines: {"connected": URL} once the WebSocket is open, then one
{"result": {...}} line with what was observed. Frames are observed through `websockets`' own
frame log (DEBUG records "< FRAME" received and "> FRAME" sent), so the payloads reported are
the bytes that crossed the wire, not what the library chose to surface.

usage: protocol_checks.py CHECK URL [ARGS...]
  pings URL                     client pings with payloads; the pongs seen for them
  keepalive URL SECONDS EVENTS  stay connected, never ping; count the server's pings and the
                                pongs `websockets` answers with; collect EVENTS events
  close URL CODE [REASON]       client-initiated close; what the server closes with
  fragmented URL EVENTS         send fragmented text and binary messages while receiving;
                                collect EVENTS events
  shutdown URL                  print each event as {"event": ...} until the server closes;
                                its close frame as `websockets` parsed it
"""
import asyncio
import json
import logging
import sys
import time

import websockets
from websockets.frames import Frame, Opcode
from websockets.protocol import State


class FrameLog(logging.Handler):
    """Records every frame `websockets` logs as received (<) or sent (>)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.received = []
        self.sent = []
        self.close_received_at = None

    def emit(self, record):
        if record.args and isinstance(record.args[0], Frame):
            frame = record.args[0]
            if record.msg.startswith("<"):
                self.received.append(frame)
                if frame.opcode == Opcode.CLOSE:
                    self.close_received_at = time.monotonic()
            elif record.msg.startswith(">"):
                self.sent.append(frame)

    def since_close_received(self):
        """Seconds from the server's close frame until now (None without one)."""
        if self.close_received_at is None:
            return None
        return round(time.monotonic() - self.close_received_at, 3)

    def received_of(self, opcode):
        return [f for f in self.received if f.opcode == opcode]

    def sent_of(self, opcode):
        return [f for f in self.sent if f.opcode == opcode]


FRAMES = FrameLog()
LOGGER = logging.getLogger("websockets.client")
LOGGER.setLevel(logging.DEBUG)
LOGGER.addHandler(FRAMES)
LOGGER.propagate = False


def say(obj):
    print(json.dumps(obj), flush=True)


def connect(url):
    # No client keepalive: every ping on the wire is one this script (or the server) chose.
    return websockets.connect(
        url, ping_interval=None, close_timeout=5, max_size=2**24, logger=LOGGER
    )


async def pings(url):
    payloads = [b"", b"Hello, world!", bytes(range(125)), "ünïcødé ✓".encode()]
    async with connect(url) as ws:
        say({"connected": url})
        results = []
        for payload in payloads:
            started = time.monotonic()
            waiter = await ws.ping(payload)
            try:
                # websockets resolves the waiter only for a pong with this exact payload.
                await asyncio.wait_for(waiter, timeout=5)
                answered = True
            except asyncio.TimeoutError:
                answered = False
            results.append(
                {
                    "sent": payload.hex(),
                    "answered": answered,
                    "ms": round((time.monotonic() - started) * 1000, 1),
                }
            )
        pongs = [f.data.hex() for f in FRAMES.received_of(Opcode.PONG)]
        say({"result": {"pings": results, "pong_payloads": pongs, "open": ws.state is State.OPEN}})


async def receive_events(ws, want, events, deadline):
    """Appends text messages (JSON) to `events` until `want` or the deadline."""
    while len(events) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=left)
        except asyncio.TimeoutError:
            return
        events.append(json.loads(message))


async def keepalive(url, seconds, want):
    events = []
    async with connect(url) as ws:
        say({"connected": url})
        deadline = time.monotonic() + seconds
        closed = None
        try:
            await receive_events(ws, want, events, deadline)
            # Stay on for the whole window even once every event is in: the pings go on.
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            # A round trip proves the connection still works both ways.
            await asyncio.wait_for(await ws.ping(b"still there?"), timeout=5)
        except websockets.ConnectionClosed as err:
            closed = {"code": err.rcvd.code if err.rcvd else None, "reason": err.rcvd.reason if err.rcvd else None}
        server_pings = FRAMES.received_of(Opcode.PING)
        pongs = FRAMES.sent_of(Opcode.PONG)
        say(
            {
                "result": {
                    "server_pings": len(server_pings),
                    "server_ping_payloads": [f.data.hex() for f in server_pings],
                    "pongs_sent": len(pongs),
                    "pong_payloads": [f.data.hex() for f in pongs],
                    "open": ws.state is State.OPEN,
                    "closed": closed,
                    "events": events,
                }
            }
        )


async def close(url, code, reason):
    async with connect(url) as ws:
        say({"connected": url})
        started = time.monotonic()
        await ws.close(code, reason)
        # close() returns once the server's close frame came and the TCP connection ended:
        # the server is to close it (a client waits for that, up to its close_timeout).
        elapsed = time.monotonic() - started
        tcp_after_close = FRAMES.since_close_received()
        rcvd = ws.protocol.close_rcvd
        say(
            {
                "result": {
                    "sent": {"code": code, "reason": reason},
                    "received": {"code": rcvd.code, "reason": rcvd.reason} if rcvd else None,
                    "state": ws.state.name,
                    "seconds": round(elapsed, 3),
                    "tcp_closed_after_close_frame": tcp_after_close,
                    "tcp_closed": ws.connection_lost_waiter.done(),
                }
            }
        )


async def fragmented(url, want):
    events = []
    async with connect(url) as ws:
        say({"connected": url})
        deadline = time.monotonic() + 30

        async def slow_fragments(parts):
            for part in parts:
                yield part
                await asyncio.sleep(0.1)

        receiving = asyncio.create_task(receive_events(ws, want, events, deadline))
        # Wait for the stream to flow, then send messages the server must read and ignore
        # while it keeps writing events: a text message in 4 fragments spread over time (the
        # server gets blocks in between), then a binary message in 3.
        while not events and time.monotonic() < deadline and not receiving.done():
            await asyncio.sleep(0.02)
        before = len(events)
        await ws.send(slow_fragments(["{\"hello\": ", "\"this is ", "ignored ✓", "\"}"]))
        await ws.send([b"\x00\x01", b"\xfe\xff", b"end"])
        after_sending = len(events)
        await asyncio.wait_for(await ws.ping(b"after fragments"), timeout=5)
        await receiving
        sent = [
            {"opcode": f.opcode.name, "fin": f.fin, "len": len(f.data)}
            for f in FRAMES.sent
            if f.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
        ]
        say(
            {
                "result": {
                    "frames_sent": sent,
                    "events_before": before,
                    "events_while_sending": after_sending - before,
                    "events": events,
                    "open": ws.state is State.OPEN,
                }
            }
        )


async def shutdown(url):
    async with connect(url) as ws:
        say({"connected": url})
        received = 0
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), timeout=30)
                say({"event": json.loads(message)})
                received += 1
        except websockets.ConnectionClosed as err:
            # recv() raises once the TCP connection is closed, which the server is to do.
            tcp_after_close = FRAMES.since_close_received()
            rcvd = err.rcvd
            say(
                {
                    "result": {
                        "received": {"code": rcvd.code, "reason": rcvd.reason} if rcvd else None,
                        # What websockets would raise for a malformed close frame: 1002/1007.
                        "sent": {"code": err.sent.code, "reason": err.sent.reason} if err.sent else None,
                        "clean": isinstance(err, websockets.ConnectionClosedOK),
                        "tcp_closed_after_close_frame": tcp_after_close,
                        "messages_before": received,
                    }
                }
            )


def main():
    check, url, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if check == "pings":
        run = pings(url)
    elif check == "keepalive":
        run = keepalive(url, float(args[0]), int(args[1]))
    elif check == "close":
        run = close(url, int(args[0]), args[1] if len(args) > 1 else "")
    elif check == "fragmented":
        run = fragmented(url, int(args[0]))
    elif check == "shutdown":
        run = shutdown(url)
    else:
        sys.exit(f"unknown check {check!r}")
    asyncio.run(run)


main()
