"""Drives the real speedracer client library (PyPI `speedracer` 0.0.13, seed 001; nothing of
ours) against a node, one command per line on stdin, one JSON line per result on stdout:

    subscribe begin|now BATCH   Connection(URL, cert=(CERT, KEY)).subscribe(DATASET, ...)
    read N                      the next N messages: {"seq", "height", "data"} each
    seek SEQ                    sub.seek(SEQ)
    mark                        remembers now (UTC), prints {"mark": ...}
    seek_mark                   sub.seek(<that time>)
    nothing SECONDS             prints {"nothing": true} if no message comes within SECONDS
    close                       closes the connection (a later subscribe opens a new one)
    quit

Every command's end is acknowledged with {"ok": COMMAND}; a failure prints {"error": ...}
and exits 1.

usage: speedracer_driver.py URL CERT KEY DATASET [CA_BUNDLE]
"""
import asyncio
import datetime
import json
import logging
import sys

from speedracer import Connection, Offset

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def emit(value):
    print(json.dumps(value), flush=True)


async def main():
    url, cert, key, dataset = sys.argv[1:5]
    ca_bundle = sys.argv[5] if len(sys.argv) > 5 else None
    loop = asyncio.get_running_loop()
    conn = None
    sub = None
    stream = None
    mark = None
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command, *args = line.split()
        if command == "subscribe":
            conn = Connection(url, cert=(cert, key), ca_bundle=ca_bundle)
            offset = Offset.BEGIN if args[0] == "begin" else Offset.NOW
            sub = await conn.subscribe(dataset, offset=offset, batch=int(args[1]))
            stream = sub.__aiter__()
        elif command == "read":
            for _ in range(int(args[0])):
                msg = await asyncio.wait_for(stream.__anext__(), timeout=60)
                emit({
                    "seq": msg.metadata.sequence.stream,
                    "height": int(msg.headers["Planetmint-Height"]),
                    "data": json.loads(msg.data.decode()),
                })
        elif command == "seek":
            await sub.seek(int(args[0]))
            stream = sub.__aiter__()
        elif command == "mark":
            mark = datetime.datetime.utcnow()
            emit({"mark": mark.isoformat()})
        elif command == "seek_mark":
            await sub.seek(mark)
            stream = sub.__aiter__()
        elif command == "nothing":
            try:
                msg = await asyncio.wait_for(stream.__anext__(), timeout=float(args[0]))
                emit({"unexpected": msg.metadata.sequence.stream})
            except asyncio.TimeoutError:
                emit({"nothing": True})
            stream = sub.__aiter__()
        elif command == "close":
            await conn.close()
            conn = sub = stream = None
        elif command == "quit":
            break
        emit({"ok": command})
    if conn is not None:
        await conn.close()


try:
    asyncio.run(main())
except Exception as err:  # the test reads why
    emit({"error": f"{type(err).__name__}: {err}"})
    sys.exit(1)
