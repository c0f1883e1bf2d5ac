"""stream-sea's own public client library (`stream-sea-client` 0.7.0 from PyPI, nothing of
ours) against a node: connects and authenticates as the library does, subscribes to a stream,
prints every payload it is delivered as a JSON line until it has COUNT of them, then reads the
stream's schema and the versions vector over HTTP the way the library does.

usage: stream_sea.py HOST PORT CLIENT_ID CLIENT_SECRET STREAM COUNT

Prints {"subscribed": true} once subscribed, {"event": ...} per delivery, then
{"schema": {...}} and {"versions": [...]}; on a refused authentication {"refused": "..."}.
"""
import asyncio
import json
import sys

from stream_sea_client import (
    CredentialsError,
    StreamSeaConnection,
    describe_stream,
    get_schema_versions_vector,
)


async def main():
    host, port, client_id, secret, stream, count = sys.argv[1:7]
    port, count = int(port), int(count)
    try:
        connection = await StreamSeaConnection(
            remote_host=host, remote_port=port, client_id=client_id, client_secret=secret
        )
    except CredentialsError as err:
        print(json.dumps({"refused": str(err)}), flush=True)
        return
    deliveries = await connection.subscribe(stream)
    print(json.dumps({"subscribed": True}), flush=True)
    received = 0
    async for payload in deliveries:
        print(json.dumps({"event": payload}), flush=True)
        received += 1
        if received >= count:
            break
    schema = describe_stream(
        remote_host=host, remote_port=port, client_id=client_id, client_secret=secret,
        stream=stream.split("?")[0],
    )
    print(json.dumps({"schema": None if schema is None else {
        "name": schema.name, "version": schema.version, "fields": schema.fields}}), flush=True)
    versions = get_schema_versions_vector(
        remote_host=host, remote_port=port, client_id=client_id, client_secret=secret,
        streams=[stream.split("?")[0], "no_such_stream"],
    )
    print(json.dumps({"versions": versions}), flush=True)
    ws = await connection.ensure_ws
    await ws.close()


asyncio.run(main())
