"""Does asyncio-pool 0.6.0 cancel its jobs when the task that owns the pool is cancelled?

    pip install asyncio-pool==0.6.0 && python bench/aiopool_cancel_check.py

Why capcheck's pool is a TaskGroup instead (verifier/core/pool.py). Prints how
long the cancelled owner took to finish, how many jobs started after the
cancel, and whether they ran to completion. capcheck does not depend on
asyncio-pool; this script only documents the check.
"""

import asyncio
import contextlib
import sys
import time


async def main() -> None:
    try:
        from asyncio_pool import AioPool
    except ImportError:
        sys.exit("asyncio-pool is not installed: pip install asyncio-pool==0.6.0")
    state = {"running": 0, "max": 0, "started": 0, "finished": 0}

    async def job() -> None:
        state["started"] += 1
        state["running"] += 1
        state["max"] = max(state["max"], state["running"])
        try:
            await asyncio.sleep(0.5)  # a 0.5 s request
            state["finished"] += 1
        finally:
            state["running"] -= 1

    async def owner() -> None:
        async with AioPool(size=4) as pool:
            for _ in range(20):
                await pool.spawn(job())

    t0 = time.monotonic()
    task = asyncio.create_task(owner())
    await asyncio.sleep(0.1)
    started_at_cancel = state["started"]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    print(f"python {sys.version.split()[0]}: owner cancelled at 0.1 s with {started_at_cancel} jobs started; "
          f"it finished after {time.monotonic() - t0:.2f} s; {state['started'] - started_at_cancel} jobs started "
          f"after the cancel; {state['finished']} ran to completion; at most {state['max']} at once")


if __name__ == "__main__":
    asyncio.run(main())
