"""A seeded omnichannel world that writes raw histories AND the ground truth behind them.

``simulate(preset("small"), "world/")`` writes a histories directory (``events``, ``contacts``,
``consents``, ``identity_links``, ``customers``; the exact contract of :mod:`omni_ml.data`, so
``load_histories("world/")`` validates it) and ``world/truth/``:

``identity.parquet``
    ``identifier, customer_id, shared``: the true person of every identifier (``crm:``, ``email:``,
    ``phone:``, ``app:``, ``loyalty:``, every ``cookie:`` seen). ``shared`` identifiers (a household's
    phone, a shop's default loyalty card) have one row per person using them.
``propensity.parquet``
    ``customer_id, p_purchase``: the exact probability of at least one purchase in ``[end, end + H)``
    given each person's latent state at ``end``, under the future regime *no outbound contacts in the
    future window* (computed by a forward recursion, see :mod:`omni_ml.simulate.truth`; no Monte-Carlo
    error).
``channel_response.parquet``
    ``customer_id, channel, p_if_contacted, p_if_not, cost, consented``: probability of >= 1 purchase in
    ``[end, end + 7 days)`` if contacted at ``end`` on ``channel`` or not contacted, for every contactable
    channel (``consented`` says whether the contact would be allowed).
``future_events.parquet``
    The realised events of ``[end, end + H)`` (events schema, true ``customer_id`` on every row), drawn
    from the same law as ``p_purchase``.
``send_time.parquet``
    ``customer_id, channel, best_hour, best_weekday``: the whole hour (0-23, UTC) and ISO weekday
    (1 = Monday) at which a contact on that channel has the largest effect (null hour: ``direct_mail``
    has no hour curve). The rhythms and the effect curve are described in :mod:`omni_ml.simulate.rhythm`
    and recorded in ``world.json`` (``send_time``).
``world.json``
    The config, the future regime, the send-time effect curve and row counts.

**How identity resolution reproduces the truth ids** (INTERFACES.md "Customer id rule"). Every person
has a crm id ``C0000001``...; ``customers.customer_id`` and rows that carry a ``customer_id`` use it,
and ``crm:<id>`` is linked at sign-up to the person's email, phone, app device and loyalty card. Cookies
are linked to the email by logins (a share ``link_rate`` of cookies). Following the links from
``crm:<id>`` reaches all identifiers of that person, so a resolution that gives each connected
component with one crm id that id recovers ``truth/identity`` for every linked identifier, PROVIDED it
does not trust shared identifiers: a household phone is linked to several crm ids and a shop's default
card to many persons' emails (``shared`` in the truth); following them would merge people. Cookies that
were never linked cannot be resolved (they become ``anon-`` customers) although the truth knows them.

The exact value of a timed campaign and each person's best send time come from
:func:`timed_campaign_value` and :func:`best_send_times`.

A world is continued under a campaign with :func:`continue_world` (same seed, same history, common
random numbers), so a policy can be evaluated by simulation as well as by the truth tables;
:func:`continue_histories` (``omni-ml simulate --continue-from``) writes the continued world as a complete
histories directory ending ``days`` later, with its own ``truth/``, to run cycle after cycle. Every
per-person decision of a day uses that person's own uniforms, so persons not in the campaign buy on the
same days as in ``truth/future_events``; row details (times, amounts, products) of a chunk may be
re-drawn when its rows change.

Scale: persons are simulated in chunks of ``chunk_size`` (memory is bounded by a chunk); each chunk
has its own random streams derived from ``(seed, chunk)`` with numpy ``SeedSequence``, so results
depend on ``seed`` and ``chunk_size`` but not on ``workers`` (chunks simulated in parallel processes).

Examples
--------
>>> import tempfile
>>> import polars as pl
>>> world = simulate(preset("small", n_customers=100), tempfile.mkdtemp())
>>> sorted(p.stem for p in (world / "truth").iterdir())
['channel_response', 'future_events', 'identity', 'propensity', 'send_time', 'world']
"""

from __future__ import annotations

from omni_ml.simulate.config import PRESETS, SimulationConfig, preset
from omni_ml.simulate.continuation import continue_histories, continue_world, load_config
from omni_ml.simulate.timed import best_send_times, timed_campaign_value
from omni_ml.simulate.world import simulate

__all__ = [
    "PRESETS",
    "SimulationConfig",
    "best_send_times",
    "continue_histories",
    "continue_world",
    "load_config",
    "preset",
    "simulate",
    "timed_campaign_value",
]
