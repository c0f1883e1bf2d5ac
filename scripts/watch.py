#!/usr/bin/env python3
"""Watch a planetmint-streams (or Planetmint) node: discover the stream from the HTTP API,
print every event as one JSON line, and resume by height after any disconnect (also while the
node restarts: refused connections, connections that end before an HTTP answer, refused
upgrades), waiting 1 s, then twice as long each time up to 10 s.

usage: watch.py API_URL [--blocks] [--from-height N]
"""
import argparse
import asyncio
import json
import sys
import urllib.request

import websockets


def discover(api, blocks):
    """The stream URL the node publishes in its API root document."""
    with urllib.request.urlopen(api.rstrip("/") + "/api/v1/", timeout=10) as response:
        info = json.load(response)
    return info["streamedblocks" if blocks else "streams"]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("api", help="node API, e.g. http://localhost:9984")
    parser.add_argument("--blocks", action="store_true", help="watch valid_blocks instead")
    parser.add_argument("--from-height", type=int, default=None)
    args = parser.parse_args()
    # Exactly once: `complete` is the last height whose events were all printed. A reconnect
    # asks for everything after it; events of the block in progress that were already printed
    # come again and are skipped.
    complete = args.from_height
    current, printed = None, set()
    url, delay = None, 1
    while True:
        try:
            if url is None:
                url = await asyncio.to_thread(discover, args.api, args.blocks)
            target = url if complete is None else f"{url}?from_height={complete}"
            async with websockets.connect(target) as ws:
                print(f"connected to {target}", file=sys.stderr)
                delay = 1
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
            print(f"closed {ws.close_code} {ws.close_reason}; reconnecting in {delay} s", file=sys.stderr)
        # Any failure to connect or to stay connected: refused, reset, a node restarting that
        # accepts the connection but gives no HTTP answer (InvalidMessage), a refused upgrade
        # (InvalidStatus), a lost connection, a timeout, a discovery that did not answer.
        except (OSError, ValueError, KeyError, websockets.WebSocketException) as err:
            print(f"disconnected ({err!r}); reconnecting in {delay} s", file=sys.stderr)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
