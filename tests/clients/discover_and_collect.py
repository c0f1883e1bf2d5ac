"""An independent client (Python `websockets`, nothing of ours): discovers the stream from the
node's HTTP root document the way Planetmint clients do, then prints every message it gets as a
JSON line until it has COUNT of them.

usage: discover_and_collect.py API_BASE_URL COUNT [streams|streamedblocks]
"""
import asyncio
import json
import sys
import urllib.request

import websockets


async def main():
    api, count = sys.argv[1], int(sys.argv[2])
    which = sys.argv[3] if len(sys.argv) > 3 else "streams"
    with urllib.request.urlopen(api.rstrip("/") + "/") as response:
        root = json.load(response)
    url = root["api"]["v1"][which]
    async with websockets.connect(url) as ws:
        print(json.dumps({"connected": url}), flush=True)
        for _ in range(count):
            message = await asyncio.wait_for(ws.recv(), timeout=30)
            print(json.dumps(json.loads(message)), flush=True)


asyncio.run(main())
