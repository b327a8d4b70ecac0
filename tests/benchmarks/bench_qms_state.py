"""Benchmark: QMS state scan and watcher latency on a generated project.

    python tests/benchmarks/bench_qms_state.py [--docs 10000] [--agents 20]

Generates (in a temp dir) a project laid out as the QMS CLI writes it: a mix of types (CR
with TP/ER/VAR/ADD children, INV, SOP, TEMPLATE, SDLC RS/RTM), a .meta file each, an audit file
each with several lines (seed-shaped for seeded docs), ~5% checked out across the agents, their
workspace copies (a few missing, a few unmanaged) and inbox tasks. Prints:

- full scan time, median of 5 (warm page cache), and one rescan_paths after a change;
- the time from a change on disk to its event: an appended audit line -> ActivityEvent, a new
  workspace file -> StateChanged (median of 5 each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.qms_state import rescan_paths, scan  # noqa: E402
from core.qms_watch import ActivityEvent, QmsWatcher, StateChanged  # noqa: E402

CHECKED_OUT_SHARE = 0.05


def _doc_ids(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(doc_id, type key) pairs in a realistic mix."""
    ids: list[tuple[str, str]] = [(f"SOP-{n:03d}", "SOP") for n in range(1, 61)]
    ids += [(f"TEMPLATE-{t}", "TEMPLATE") for t in ("CR", "INV", "TP", "ER", "VAR", "ADD", "VR", "SOP")]
    ids += [(f"SDLC-{ns}-{kind}", f"{ns}-{kind}") for ns in ("FLOW", "QMS", "CQ") for kind in ("RS", "RTM")]
    cr = inv = 0
    while len(ids) < count:
        if rng.random() < 0.85:
            cr += 1
            parent = f"CR-{cr:03d}"
            ids.append((parent, "CR"))
            for t in range(rng.choice((0, 0, 1, 1, 2))):
                tp = f"{parent}-TP-{t + 1:03d}"
                ids.append((tp, "TP"))
                ids += [(f"{tp}-ER-{e + 1:03d}", "ER") for e in range(rng.choice((0, 1, 2)))]
            ids += [(f"{parent}-VAR-{v + 1:03d}", "VAR") for v in range(rng.choice((0, 0, 0, 1)))]
            ids += [(f"{parent}-ADD-{a + 1:03d}", "ADD") for a in range(rng.choice((0, 0, 0, 0, 1)))]
        else:
            inv += 1
            ids.append((f"INV-{inv:03d}", "INV"))
    return ids[:count]


def _audit_lines(doc_id: str, doc_type: str, holder: str | None, start: datetime, rng: random.Random) -> list[dict]:
    if doc_type in ("SOP", "TEMPLATE"):
        lines = [{"timestamp": start.isoformat(), "action": "seed", "user": "system",
                  "details": {"message": "Document seeded during QMS initialization", "version": "1.0",
                              "status": "EFFECTIVE"}}]
    else:
        lines = [{"ts": start.isoformat(timespec="seconds"), "event": "CREATE", "user": "claude", "version": "0.1",
                  "title": f"Work on {doc_id}"}]
    ts = start
    for _ in range(rng.randint(2, 10)):
        ts += timedelta(minutes=rng.randint(1, 600))
        user = rng.choice(("claude", "lead", "qa"))
        event = rng.choice(("CHECKOUT", "CHECKIN", "STATUS_CHANGE", "ROUTE_REVIEW", "REVIEW", "APPROVE"))
        line = {"ts": ts.isoformat(timespec="seconds"), "event": event, "user": user, "version": "0.1"}
        if event == "REVIEW":
            line |= {"outcome": "RECOMMEND", "comment": "Looks right. " * rng.randint(1, 8)}
        lines.append(line)
    if holder:
        ts += timedelta(minutes=rng.randint(1, 600))
        lines.append({"ts": ts.isoformat(timespec="seconds"), "event": "CHECKOUT", "user": holder, "version": "0.1"})
    return lines


def generate(root: Path, docs: int, agents: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    names = [f"agent-{n:02d}" for n in range(1, agents + 1)]
    meta_root, audit_root = root / "QMS" / ".meta", root / "QMS" / ".audit"
    held = 0
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    for doc_id, doc_type in _doc_ids(docs, rng):
        holder = rng.choice(names) if rng.random() < CHECKED_OUT_SHARE else None
        executable = doc_type in ("CR", "INV", "TP", "ER", "VAR", "ADD", "VR")
        meta = {
            "doc_id": doc_id, "doc_type": doc_type, "version": "0.1" if holder else rng.choice(("0.1", "1.0", "1.1")),
            "status": "DRAFT" if holder else rng.choice(("DRAFT", "IN_REVIEW", "EFFECTIVE", "CLOSED")),
            "executable": executable, "execution_phase": "pre_release" if executable else None,
            "responsible_user": holder or rng.choice(("claude", "lead", None)), "checked_out": bool(holder),
            "checked_out_date": "2026-02-24" if holder else None, "effective_version": None, "pending_assignees": [],
        }
        (meta_root / doc_type).mkdir(parents=True, exist_ok=True)
        (meta_root / doc_type / f"{doc_id}.json").write_text(json.dumps(meta, indent=2))
        (audit_root / doc_type).mkdir(parents=True, exist_ok=True)
        lines = _audit_lines(doc_id, doc_type, holder, start + timedelta(hours=rng.randint(0, 2000)), rng)
        (audit_root / doc_type / f"{doc_id}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        if holder:
            held += 1
            if rng.random() < 0.97:  # a few missing copies
                ws = root / ".claude" / "users" / holder / "workspace"
                ws.mkdir(parents=True, exist_ok=True)
                body = "\n".join(f"Paragraph {n} of {doc_id}." for n in range(rng.randint(20, 200)))
                head = f"---\ntitle: Work on {doc_id}\nrevision_summary: Initial draft\n---\n\n"
                (ws / f"{doc_id}.md").write_text(head + body + "\n")
    for agent in names:
        users = root / ".claude" / "users" / agent
        (users / "workspace").mkdir(parents=True, exist_ok=True)
        (users / "workspace" / "NOTES-001.md").write_text("---\ntitle: scratch\n---\n")  # unmanaged
        (users / "inbox").mkdir(parents=True, exist_ok=True)
        for n in range(rng.randint(0, 4)):
            task = f"task-CR-{n + 1:03d}-review-v0-1"
            (users / "inbox" / f"{task}.md").write_text(
                f"---\ntask_id: {task}\ntask_type: REVIEW\nworkflow_type: REVIEW\ndoc_id: CR-{n + 1:03d}\n"
                f"title: Work on CR-{n + 1:03d}\nstatus: IN_REVIEW\nresponsible_user: claude\nassigned_by: lead\n"
                f"assigned_date: '2026-02-24'\nversion: '0.1'\n---\n\n# Review\n" + "- [ ] check\n" * 30)
    return {"held": held, "agents": names}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def _latencies(root: Path, agent: str, rounds: int = 5) -> tuple[list[float], list[float]]:
    watcher = QmsWatcher(root, debounce_ms=400, step_ms=50)
    queue: asyncio.Queue = asyncio.Queue()

    async def pump():
        async for event in watcher.events():
            queue.put_nowait((time.perf_counter(), event))

    t0 = time.perf_counter()
    task = asyncio.create_task(pump())
    await asyncio.wait_for(watcher.wait_ready(), 30)
    print(f"watcher ready (offsets of every audit file taken) in {_ms(time.perf_counter() - t0)}")
    audit_file = next((root / "QMS" / ".audit" / "CR").glob("CR-*.jsonl"))
    audit, workspace = [], []
    for n in range(rounds):
        line = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), "event": "CHECKIN", "user": "claude",
                "version": "0.1", "n": n}
        t0 = time.perf_counter()
        with audit_file.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        while True:
            t1, event = await asyncio.wait_for(queue.get(), 10)
            if isinstance(event, ActivityEvent) and event.details.get("n") == n:
                audit.append(t1 - t0)
                break
        target = root / ".claude" / "users" / agent / "workspace" / f"NEW-{n:03d}.md"
        t0 = time.perf_counter()
        target.write_text("---\ntitle: new\n---\n")
        while True:
            t1, event = await asyncio.wait_for(queue.get(), 10)
            if isinstance(event, StateChanged) and target in event.paths:
                workspace.append(t1 - t0)
                break
        await asyncio.sleep(0.1)
    watcher.stop()
    await asyncio.wait_for(task, 10)
    return audit, workspace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qms-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        info = generate(root, args.docs, args.agents)
        print(f"generated {args.docs} documents, {info['held']} checked out, {args.agents} agents "
              f"in {time.perf_counter() - t0:.1f} s")
        times, cpu = [], []
        for _ in range(5):
            t0, c0 = time.perf_counter(), time.process_time()
            snap = scan(root, agents=info["agents"], containers=[], stuck_after=timedelta(hours=4))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"full scan: median {_ms(statistics.median(times))} wall, {_ms(statistics.median(cpu))} CPU "
              f"(wall min {_ms(min(times))}, max {_ms(max(times))}); {len(snap.checkouts)} rows, "
              f"{sum(map(len, snap.workspaces.values()))} workspace files, "
              f"{sum(map(len, snap.inboxes.values()))} inbox tasks, {len(snap.warnings)} warnings")
        changed = root / ".claude" / "users" / info["agents"][0] / "workspace" / "NOTES-001.md"
        changed.write_text("---\ntitle: edited\n---\n")
        meta = next(p for p in (root / "QMS" / ".meta" / "CR").glob("*.json"))
        t0 = time.perf_counter()
        rescan_paths(snap, [changed, meta])
        print(f"rescan_paths (one workspace file + one meta): {_ms(time.perf_counter() - t0)}")
        audit, workspace = asyncio.run(_latencies(root, info["agents"][0]))
        print(f"change -> event (watcher debounce 400 ms, step 50 ms), median of {len(audit)}:")
        print(f"  appended audit line -> ActivityEvent: {_ms(statistics.median(audit))} "
              f"(min {_ms(min(audit))}, max {_ms(max(audit))})")
        print(f"  new workspace file -> StateChanged:   {_ms(statistics.median(workspace))} "
              f"(min {_ms(min(workspace))}, max {_ms(max(workspace))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
