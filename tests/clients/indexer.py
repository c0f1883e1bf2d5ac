"""An indexer as a user would write it (Python `websockets`, nothing of ours): WORKERS workers
share valid_transactions with `partition=i/WORKERS`, each asks for whole transactions with
`include=transaction`, and each resumes from its own height. Every transaction received is
checked the way Planetmint checks one: its id must be the SHA3-256 of its canonical JSON
(planetmint-transactions' serialization, with `id` null and, for version 2.0, `assets` named
`asset` as it was signed), so no request to the API is needed to trust it.

Prints one JSON line per event: {"worker": i, "event": <the message>, "verified": bool}, and
stops when the workers together have COUNT events.

usage: indexer.py STREAMS_BASE_URL WORKERS COUNT [FROM_HEIGHT]
"""
import asyncio
import hashlib
import json
import sys

import websockets


def planetmint_id(transaction):
    """The id Planetmint computes for a transaction as its API returns it."""
    signed = dict(transaction)
    signed["id"] = None
    if signed.get("version") == "2.0":
        signed["asset"] = signed.pop("assets")
    text = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha3_256(text.encode()).hexdigest()


async def worker(base, index, workers, from_height, queue):
    url = (f"{base}/api/v1/streams/valid_transactions"
           f"?include=transaction&partition={index}/{workers}&from_height={from_height}")
    async with websockets.connect(url, max_size=None) as ws:
        async for message in ws:
            event = json.loads(message)
            transaction = event.get("transaction")
            verified = (transaction is not None
                        and transaction["id"] == event["transaction_id"]
                        and planetmint_id(transaction) == event["transaction_id"])
            await queue.put({"worker": index, "event": event, "verified": verified})


async def main():
    base, workers, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from_height = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    queue = asyncio.Queue()
    tasks = [asyncio.create_task(worker(base, i, workers, from_height, queue))
             for i in range(workers)]
    for _ in range(count):
        line = await asyncio.wait_for(queue.get(), timeout=60)
        print(json.dumps(line), flush=True)
    for task in tasks:
        task.cancel()


asyncio.run(main())
