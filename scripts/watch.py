#!/usr/bin/env python3
"""Watch a planetmint-streams (or Planetmint) node: discover the stream from the HTTP API,
print every event as one JSON line, and resume by height after any disconnect.

usage: watch.py API_URL [--blocks] [--from-height N]
"""
import argparse
import asyncio
import json
import sys
import urllib.request

import websockets


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("api", help="node API, e.g. http://localhost:9984")
    parser.add_argument("--blocks", action="store_true", help="watch valid_blocks instead")
    parser.add_argument("--from-height", type=int, default=None)
    args = parser.parse_args()
    with urllib.request.urlopen(args.api.rstrip("/") + "/api/v1/") as response:
        info = json.load(response)
    url = info["streamedblocks" if args.blocks else "streams"]
    # Exactly once: `complete` is the last height whose events were all printed. A reconnect
    # asks for everything after it; events of the block in progress that were already printed
    # come again and are skipped.
    complete = args.from_height
    current, printed = None, set()
    while True:
        target = url if complete is None else f"{url}?from_height={complete}"
        try:
            async with websockets.connect(target) as ws:
                print(f"connected to {target}", file=sys.stderr)
                async for message in ws:
                    event = json.loads(message)
                    height = event["height"]
                    if args.blocks:
                        print(json.dumps(event), flush=True)
                        complete = height
                        continue
                    if height != current:
                        if current is not None:
                            complete = current
                        current, printed = height, set()
                    if event["transaction_id"] in printed:
                        continue
                    printed.add(event["transaction_id"])
                    print(json.dumps(event), flush=True)
        except (OSError, websockets.ConnectionClosed) as err:
            print(f"disconnected ({err}); reconnecting", file=sys.stderr)
            await asyncio.sleep(1)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
