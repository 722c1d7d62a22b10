#!/usr/bin/env python3
"""Replays the benchmark's append workload through LangChain's DynamoDBChatMessageHistory.

Run by `cargo run -p bench` (which reads the JSON this prints); by hand:
  python bench/langchain_replay.py --endpoint http://127.0.0.1:8000 --checkpoints 10,1000 --samples 50

One session, alternating user/assistant messages of ~300 bytes (the same text as the Rust side),
appended one at a time with `add_message` until every checkpoint has `--samples` measured appends,
DynamoDB refuses a write, or `--budget-secs` runs out. Every DynamoDB call is asked for
ReturnConsumedCapacity=TOTAL through botocore's event hooks; LangChain itself is unchanged.
"""
import argparse
import json
import sys
import time
import uuid
from importlib.metadata import version

import boto3
from botocore.exceptions import ClientError
from langchain_community.chat_message_histories import DynamoDBChatMessageHistory
from langchain_core.messages import AIMessage, HumanMessage


def text(i):
    return (f"message {i}: " + "lorem ipsum dolor sit amet " * 12)[:300]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--checkpoints", required=True, help="history lengths, comma-separated")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--budget-secs", type=float, default=600)
    args = parser.parse_args()
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))

    table_name = f"langchain-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=args.endpoint)
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "SessionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "SessionId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table_name)

    history = DynamoDBChatMessageHistory(table_name=table_name, session_id="bench", endpoint_url=args.endpoint)
    calls = []
    events = history.table.meta.client.meta.events

    def ask_for_capacity(params, **_):
        params["ReturnConsumedCapacity"] = "TOTAL"

    def count(parsed, model, **_):
        units = (parsed.get("ConsumedCapacity") or {}).get("CapacityUnits", 0.0)
        calls.append((model.name, units))

    events.register("before-parameter-build.dynamodb.*", ask_for_capacity)
    events.register("after-call.dynamodb.*", count)

    # Like the Rust side, a checkpoint's appends stay below twice its history length.
    windows = [(c, c + min(args.samples, max(c, 1))) for c in checkpoints]
    points = {c: {"history": c, "latencies_ms": [], "read_units": [], "write_units": [], "calls": []} for c in checkpoints}
    curve = []
    stopped = {"at": None, "reason": None}
    started = time.monotonic()
    i = 0
    while i < windows[-1][1]:
        if time.monotonic() - started > args.budget_secs:
            stopped = {"at": i, "reason": f"time budget of {args.budget_secs:.0f} s spent"}
            break
        message = HumanMessage(content=text(i)) if i % 2 == 0 else AIMessage(content=text(i))
        calls.clear()
        before = time.perf_counter()
        try:
            history.add_message(message)
        except ClientError as error:
            stopped = {"at": i, "reason": f"{error.response['Error']['Code']}: {error.response['Error']['Message']}"}
            break
        millis = (time.perf_counter() - before) * 1000
        reads = sum(units for name, units in calls if name == "GetItem")
        writes = sum(units for name, units in calls if name != "GetItem")
        curve.append([i, round(millis, 3), writes])
        for low, high in windows:
            if low <= i < high:
                point = points[low]
                point["latencies_ms"].append(millis)
                point["read_units"].append(reads)
                point["write_units"].append(writes)
                point["calls"].append(len(calls))
        i += 1

    json.dump(
        {
            "library": f"langchain-community {version('langchain-community')}, boto3 {version('boto3')}",
            "points": [points[c] for c in checkpoints],
            "curve": curve,
            "stopped_at": stopped["at"],
            "reason": stopped["reason"],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
