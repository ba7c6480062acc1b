"""The framework's floor: a Faust agent that does nothing with each message.

Run by bench/run.py as a subprocess:
    python bench/faust_floor.py BOOTSTRAP GROUP TOPIC EXPECTED_MESSAGES
Prints one JSON line: {"messages": n, "seconds": s} measured from the first
message to the last.
"""

from __future__ import annotations

import sys
import time

import faust
import orjson


def main() -> None:
    bootstrap, group, topic, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, topic_allow_declare=False,
                    consumer_auto_offset_reset="earliest")
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    state = {"n": 0, "first": 0.0}

    @app.agent(source)
    async def nothing(stream):  # type: ignore[no-untyped-def]
        async for _ in stream:
            if state["n"] == 0:
                state["first"] = time.perf_counter()
            state["n"] += 1
            if state["n"] >= expected:
                seconds = time.perf_counter() - state["first"]
                sys.stdout.write(orjson.dumps({"messages": state["n"],
                                               "seconds": seconds}).decode() + "\n")
                sys.stdout.flush()  # bench/run.py reads this line, then ends the process

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False,
                          override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
