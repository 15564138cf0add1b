"""Run a world chunk by chunk and write the histories directory and its truth.

A chunk's tables are arrow tables with dictionary-coded strings (:mod:`omni_ml.simulate.columns`);
with ``workers > 1`` they are computed by spawned processes that import only ``omni_ml.simulate``. A
writer thread appends them in chunk order to one parquet file per table (row groups per chunk) while
the next chunks are simulated, so memory is bounded by a few chunks and the same config gives the same
bytes for any number of workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import itertools
import json
import math
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from omni_ml.exceptions import ConfigError
from omni_ml.simulate.columns import ParquetTable, codes
from omni_ml.simulate.config import AGE_BANDS, CHANNEL_COST, CHANNELS, REGIONS, SimulationConfig
from omni_ml.simulate.engine import ChunkRecords, run_chunk
from omni_ml.simulate.events import DAY_US, EVENT_TYPES, RawRows, expand
from omni_ml.simulate.identifiers import (
    consents_table,
    contacts_table,
    customer_ids,
    events_table,
    identity_truth,
    links_frame,
)
from omni_ml.simulate.population import Calendar, CategoryTables, Population, draw_population
from omni_ml.simulate.rhythm import DEFAULT_SEND_HOUR, curve_description, draw_rhythm, weekday_of_day
from omni_ml.simulate.truth import purchase_probability

__all__ = ["simulate"]

# Continuing a world lives in omni_ml.simulate.continuation (it builds on this module); the old import
# path omni_ml.simulate.world.<name> keeps working for these names.
_MOVED = ("continue_histories", "continue_world", "load_config", "_campaign_channels", "_campaign_times")

Progress = Callable[[int, int], None]
CONVERSION_DAYS = 7
_FUTURE_REGIME = (
    "No outbound contacts in the future window [end, end + future_days) unless a campaign is applied "
    "with continue_world; everything else (drop-out, intent, browsing, consent changes) continues."
)


class _Sink:
    """Writes frames to their tables on a background thread, in submission order.

    Overlaps I/O with the simulation of the next chunk; the first write error is raised by :meth:`put`
    or :meth:`close`.
    """

    def __init__(self, writers: dict[str, ParquetTable]) -> None:
        self.writers = writers
        self.queue: queue.Queue[tuple[str, pa.Table] | None] = queue.Queue(maxsize=12)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="omni-ml-simulate-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writers[item[0]].write(item[1])
                except BaseException as exc:  # re-raised in the caller's thread
                    self.error = exc

    def put(self, name: str, table: pa.Table) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((name, table))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        for w in self.writers.values():
            w.close()
        if self.error is not None:
            raise self.error


def _chunks(cfg: SimulationConfig) -> list[tuple[int, int, int]]:
    n_chunks = math.ceil(cfg.n_customers / cfg.chunk_size)
    return [(k, k * cfg.chunk_size, min(cfg.chunk_size, cfg.n_customers - k * cfg.chunk_size)) for k in range(n_chunks)]


def _route(cfg: SimulationConfig, cal: Calendar, hist_rows: RawRows, fut_rows: RawRows) -> tuple[RawRows, RawRows]:
    """History rows are those before ``end``; later rows caused by history (returns) join the future."""
    end_us = (cal.epoch_day + cal.n_history) * DAY_US
    stop_us = (cal.epoch_day + cal.n_total) * DAY_US
    history = hist_rows.take(hist_rows.ts < end_us)
    spill = hist_rows.take((hist_rows.ts >= end_us) & (hist_rows.ts < stop_us))
    future = RawRows.concat([spill, fut_rows.take(fut_rows.ts < stop_us)])
    return history, future


def _customers(pop: Population, cal: Calendar) -> pa.Table:
    return pa.table(
        {
            "customer_id": customer_ids(pop.gid).to_arrow().cast(pa.string()),
            "signup_date": pa.array((cal.epoch_day + pop.signup_day).astype(np.int32), type=pa.date32()),
            "region": codes(REGIONS, pop.region),
            "age_band": codes(AGE_BANDS, pop.age_band),
            "loyalty_member": pop.has_card,
            "app_user": pop.has_app,
        }
    )


def _truth(
    cfg: SimulationConfig, chunk: int, pop: Population, cal: Calendar, tables: CategoryTables, rec: ChunkRecords
) -> tuple[pa.Table, pa.Table]:
    state = rec.end_state
    cid = customer_ids(pop.gid).to_arrow().cast(pa.string())
    p_purchase = purchase_probability(cfg, pop, cal, tables, state, cfg.future_days)
    propensity = pa.table({"customer_id": cid, "p_purchase": p_purchase})
    p_not = purchase_probability(cfg, pop, cal, tables, state, CONVERSION_DAYS)
    n_ch = len(CHANNELS)
    rhythm = draw_rhythm(cfg, chunk, pop)
    everyone = np.arange(pop.n)
    sec = np.full(pop.n, int(DEFAULT_SEND_HOUR * 3600))
    end_weekday = weekday_of_day(cal.epoch_day + cal.n_history)
    p_contacted = np.stack(
        [
            purchase_probability(
                cfg,
                pop,
                cal,
                tables,
                state,
                CONVERSION_DAYS,
                contact_channel=c,
                contact_multiplier=rhythm.multiplier(everyone, np.full(pop.n, c), sec, end_weekday),
            )
            for c in range(n_ch)
        ],
        axis=1,
    )
    # one row per person and channel, by customer id then channel name
    by_name = np.array(sorted(range(n_ch), key=lambda c: CHANNELS[c]))
    person = np.repeat(np.arange(pop.n), n_ch)
    channel = np.tile(by_name, pop.n)
    cost = np.array([CHANNEL_COST[c] for c in CHANNELS])
    response = pa.table(
        {
            "customer_id": codes(cid, person),
            "channel": codes(CHANNELS, channel),
            "p_if_contacted": p_contacted[person, channel],
            "p_if_not": p_not[person],
            "cost": cost[channel],
            "consented": state.consent[person, channel],
        }
    )
    return propensity, response


def _send_time_truth(cfg: SimulationConfig, chunk: int, pop: Population) -> pa.Table:
    """``customer_id, channel, best_hour, best_weekday`` (ISO: 1 = Monday); null hour: no hour curve."""
    rhythm = draw_rhythm(cfg, chunk, pop)
    n_ch = len(CHANNELS)
    by_name = np.array(sorted(range(n_ch), key=lambda c: CHANNELS[c]))
    person = np.repeat(np.arange(pop.n), n_ch)
    channel = np.tile(by_name, pop.n)
    hour = rhythm.best_integer_hour()[person, channel].astype(np.int8)
    return pa.table(
        {
            "customer_id": codes(customer_ids(pop.gid).to_arrow().cast(pa.string()), person),
            "channel": codes(CHANNELS, channel),
            "best_hour": pa.array(hour, mask=rhythm.flat[channel]),
            "best_weekday": pa.array((rhythm.best_weekday[person] + 1).astype(np.int8)),
        }
    )


def _simulate_chunk(cfg: SimulationConfig, k: int, offset: int, n: int) -> list[tuple[str, pa.Table]]:
    """Every table's rows of chunk ``k`` (a pure function of the config and ``k``)."""
    cal = Calendar.build(cfg)
    tables = CategoryTables.build(cfg)
    pop = draw_population(cfg, k, offset, n)
    rec = run_chunk(cfg, k, pop, cal, tables)
    history, future = _route(cfg, cal, expand(cfg, k, pop, cal, rec, 0), expand(cfg, k, pop, cal, rec, 1))
    ev, seen = events_table(cfg, k, pop, cal, history, period=0, campaign_name="", with_customer_id=False)
    del history
    fut, seen_f = events_table(cfg, k, pop, cal, future, period=1, campaign_name="", with_customer_id=True)
    propensity, response = _truth(cfg, k, pop, cal, tables, rec)
    return [
        ("events", ev),
        ("truth/future_events", fut),
        ("contacts", contacts_table(cfg, pop, cal, rec.contacts, 0, cal.n_history, "")),
        ("consents", consents_table(cal, pop, rec.consents, -(10**9), cal.n_history)),
        ("identity_links", links_frame(cfg, pop, cal, seen).to_arrow()),
        ("customers", _customers(pop, cal)),
        ("truth/identity", identity_truth(cfg, pop, pl.concat([seen, seen_f])).to_arrow()),
        ("truth/propensity", propensity),
        ("truth/channel_response", response),
        ("truth/send_time", _send_time_truth(cfg, k, pop)),
    ]


def _worker_init() -> None:
    """Worker processes keep the memory they free for the next chunk (glibc only; elsewhere a no-op).

    A chunk allocates and frees a few GB of large arrays; by default glibc returns each to the system
    and the next chunk pays again for fresh zeroed pages (system time about a fifth of the chunk's).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: large blocks come from the heap and are reused ...
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: ... which is not trimmed below 1 GB of free top
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _chunk_frames(
    cfg: SimulationConfig, chunks: list[tuple[int, int, int]], workers: int
) -> Iterator[list[tuple[str, pa.Table]]]:
    """Chunk results in chunk order.

    With ``workers > 1`` they are computed by that many spawned processes, at most ``workers + 1``
    chunks in flight so memory stays bounded.
    """
    if workers <= 1 or len(chunks) <= 1:
        for k, offset, n in chunks:
            yield _simulate_chunk(cfg, k, offset, n)
        return
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        pending: collections.deque[concurrent.futures.Future[list[tuple[str, pa.Table]]]] = collections.deque()
        todo = iter(chunks)
        for k, offset, n in itertools.islice(todo, workers + 1):
            pending.append(pool.submit(_simulate_chunk, cfg, k, offset, n))
        while pending:
            result = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_simulate_chunk, cfg, *nxt))
            yield result


def simulate(
    config: SimulationConfig, out_dir: str | Path, *, progress: Progress | None = None, workers: int = 1
) -> Path:
    """Simulate a world and write its histories directory and ``truth/``.

    Parameters
    ----------
    config
        The world (see :func:`omni_ml.simulate.preset`).
    out_dir
        Directory to write ``{events,contacts,consents,identity_links,customers}.parquet`` and
        ``truth/{identity,propensity,channel_response,future_events}.parquet`` + ``truth/world.json``.
    progress
        Called with ``(chunks_done, n_chunks)`` after each chunk.
    workers
        Processes simulating chunks in parallel (the files are identical for any number of workers).

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Examples
    --------
    >>> import tempfile, polars as pl
    >>> from omni_ml.simulate import preset
    >>> d = simulate(preset("small", n_customers=200), tempfile.mkdtemp())
    >>> pl.read_parquet(d / "truth" / "propensity.parquet").height
    200
    """
    cfg = config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("events", "contacts", "consents", "identity_links", "customers")
    truth_names = ("identity", "propensity", "channel_response", "future_events", "send_time")
    ours = {f"{n}.parquet" for n in names} | {"truth"}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if foreign:
        msg = (
            f"simulate: output directory {str(out)!r} holds other files ({', '.join(foreign[:5])}"
            f"{' ...' if len(foreign) > 5 else ''}); a histories directory must hold only its tables. "
            "Hint: choose a new or empty directory (re-running into a world directory is fine)."
        )
        raise ConfigError(msg)
    writers = {n: ParquetTable(out / f"{n}.parquet") for n in names}
    writers |= {f"truth/{n}": ParquetTable(out / "truth" / f"{n}.parquet") for n in truth_names}
    chunks = _chunks(cfg)
    sink = _Sink(writers)
    try:
        for done, frames in enumerate(_chunk_frames(cfg, chunks, workers), start=1):
            for name, frame in frames:
                sink.put(name, frame)
            del frames
            if progress is not None:
                progress(done, len(chunks))
    finally:
        sink.close()
    world = {
        "config": cfg.to_dict(),
        "future_regime": _FUTURE_REGIME,
        "conversion_days": CONVERSION_DAYS,
        "send_time": curve_description(cfg),
        "event_types": list(EVENT_TYPES),
        "rows": {name: w.rows for name, w in writers.items()},
    }
    (out / "truth" / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    return out


# ----------------------------------------------------------------------------- continued histories


def __getattr__(name: str) -> Any:
    """``continue_world``, ``continue_histories`` and ``load_config`` from :mod:`omni_ml.simulate.continuation`."""
    if name in _MOVED:
        from omni_ml.simulate import continuation

        return getattr(continuation, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
