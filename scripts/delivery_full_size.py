"""Chapter 11's delivery workload at full size: 10,000 messages each way, 100 seeded cuts.

    .venv/bin/python scripts/delivery_full_size.py [--messages 10000] [--cuts 100] [--seed 11]
                                                   [--peer lablib|python-socketio|node]

The workload is the chapter's own code, not a copy: the code cells of
notebooks/11-delivery.ipynb up to the one tagged ``workload`` are run (their output hidden),
then ``run()`` with a plan of the requested size, for every setting the peer has.  It counts
messages (lost, duplicated, reordered per direction); it times nothing that the table shows.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import io
import logging
import pathlib
import time

import nbformat

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "11-delivery.ipynb"
PEERS = {"lablib": "LablibPeer", "python-socketio": "PythonSocketioPeer", "node": "NodePeer"}


async def main_async(args) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {"__name__": "__main__"}   # dataclasses look their module up
    before_workload = True
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        tags = cell.metadata.get("tags", [])
        if "class NodePeer" in source:          # section 3.2: the class, not its runs
            source = source[:source.index("node_results =")]
        elif not before_workload or not (source.startswith("import") or "PLAN = plan(" in source
                                         or "class " in source or "workload" in tags):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            result = eval(compile(source, "<chapter 11>", "exec",
                                  flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), namespace)
            if asyncio.iscoroutine(result):
                await result
        before_workload = before_workload and "workload" not in tags
    logging.getLogger().setLevel(logging.CRITICAL)
    fault_plan = namespace["plan"](args.messages, args.cuts, args.seed)
    b2 = sum(b for _, b, _ in fault_plan.values())
    b123 = sum(sum(bursts) for bursts in fault_plan.values())
    print(f"{args.messages} messages each way, {args.cuts} cuts, seed {args.seed}: at most once should "
          f"lose {b2} c2s and {b123} s2c")
    settings = ["default"] if args.peer == "python-socketio" else list(namespace["SETTINGS"])
    results = []
    for setting in settings:
        started = time.monotonic()
        results.append(await namespace["run"](setting, namespace[PEERS[args.peer]], fault_plan=fault_plan,
                                              messages=args.messages, seed=args.seed))
        print(f"  {setting}: {time.monotonic() - started:.0f} s", flush=True)
    namespace["show"](results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--cuts", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--peer", choices=list(PEERS), default="lablib")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
