"""An independent client of the JSON-RPC stream channel (Python `websockets`, nothing of ours).

Finds the channel in the stream catalogue (`rpc_url`), checks that a connection which does
not authenticate is refused, then over ONE connection: sends malformed requests, authenticates,
opens four subscriptions on both streams with filters and from_height, updates a filter
mid-stream, unsubscribes one, and reads until the block at FINAL_HEIGHT. It prints "ready"
once subscribed (the test then writes the live blocks) and, at the end, one JSON object with
every answer and every subscription's notification results, in arrival order.

usage: rpc_session.py API_BASE_URL TOKEN KEY1 KEY2 KEY3 FINAL_HEIGHT
"""
import asyncio
import json
import sys
import urllib.request

import websockets

TIMEOUT = 60


async def call(ws, pending, request_id, method, params):
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    pending.add(request_id)


async def main():
    api, token, key1, key2, key3, final = sys.argv[1:7]
    final = int(final)
    with urllib.request.urlopen(api.rstrip("/") + "/api/v1/streams") as response:
        url = json.load(response)["rpc_url"]
    out = {"rpc_url": url, "answers": {}, "notifications": {}}

    # Signed mode: a first request other than authenticate is refused and the connection closed.
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "describe",
                                  "params": {"stream": "valid_blocks"}}))
        out["unauthenticated_answer"] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        except websockets.ConnectionClosed:
            pass
        out["unauthenticated_close"] = [ws.close_code, ws.close_reason]

    async with websockets.connect(url) as ws:
        pending = set()
        # Not a request at all: answered, and the connection still waits for authenticate.
        await ws.send("this is not JSON")
        await call(ws, pending, "auth", "authenticate", {"token": token})
        # An unknown method (before authenticate it would end the connection).
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": "m", "method": "eth_subscribe", "params": {}}))
        await call(ws, pending, "s0", "subscribe", {"stream": "valid_blocks", "from_height": 0})
        await call(ws, pending, "s1", "subscribe",
                   {"stream": "valid_transactions", "public_key": [key1], "from_height": 0})
        await call(ws, pending, "s2", "subscribe",
                   {"stream": "valid_transactions", "operation": ["CREATE"], "batch": "block",
                    "from_height": 4})
        await call(ws, pending, "s3", "subscribe",
                   {"stream": "valid_blocks", "public_key": [key2], "from_height": 2})
        await call(ws, pending, "bad", "subscribe", {"stream": "valid_transactions", "asset_id": ["xyz"]})
        unparsed = []
        ids = {}
        sent_ready = updated = unsubscribed = barrier = False
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            if message.get("method") == "subscription":
                params = message["params"]
                out["notifications"].setdefault(params["subscription"], []).append(params["result"])
                clock = params["subscription"] == ids.get("s0")
                height = params["result"]["height"]
                if clock and height >= 9 and not updated:
                    updated = True
                    await call(ws, pending, "update", "update",
                               {"subscription": ids["s1"], "add": {"public_key": [key3]}})
                if clock and height >= 11 and not unsubscribed:
                    unsubscribed = True
                    await call(ws, pending, "unsubscribe", "unsubscribe", {"subscription": ids["s2"]})
                if clock and height >= final and not barrier:
                    barrier = True
                    await call(ws, pending, "describe", "describe", {"stream": "valid_transactions"})
                    # An update (here one that changes nothing) is answered after every
                    # notification of the blocks up to its applies_after_height: a barrier.
                    await call(ws, pending, "barrier", "update", {"subscription": ids["s1"], "add": {}})
                continue
            if message.get("id") is None or message.get("id") == "m":
                unparsed.append(message)
                continue
            pending.discard(message["id"])
            out["answers"][message["id"]] = message
            if "result" in message and message["id"] in ("s0", "s1", "s2", "s3"):
                ids[message["id"]] = message["result"]
            if not sent_ready and {"s0", "s1", "s2", "s3", "bad"} <= set(out["answers"]):
                sent_ready = True
                print("ready", flush=True)
            if message["id"] == "barrier":
                break
        out["malformed_answers"] = unparsed
        out["ids"] = ids
    print(json.dumps(out), flush=True)


asyncio.run(main())
