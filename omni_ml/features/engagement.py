"""Outbound contacts: engagement per contactable channel and contact pressure.

Families ``engagement`` (contacts received, opens, clicks, open and click rates per contact,
days since the last contact, per channel) and ``contact_pressure`` (contacts in the last 7 and
30 days, overall and per channel). Both need a contacts table; without one they are empty.
Opens and clicks are events with ``event_type`` ``open`` / ``click`` on the contact's channel.
"""

from __future__ import annotations

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature, count, days_since_last, event, slug

__all__: list[str] = []


@register_family("engagement")
def engagement(ctx: FamilyContext) -> list[Feature]:
    """Per contact channel: contacts, opens, clicks and rates per contact over the engagement window."""
    if not ctx.has_contacts:
        return []
    w = ctx.engagement_window
    out: list[Feature] = []
    for ch in ctx.contact_channels:
        s = slug(ch)
        sent, opens, clicks = f"contacts_{s}_{w}d", f"opens_{s}_{w}d", f"clicks_{s}_{w}d"
        out += [
            Feature(
                f"days_since_last_contact_{s}",
                days_since_last(pl.col("channel") == ch, source="contacts"),
                f"Days since the last {ch} contact",
                f"{{value}} day{{s}} since the last {ch} contact",
                missing=f"never contacted by {ch}",
            ),
            Feature(
                sent,
                count(pl.col("channel") == ch, window=w, source="contacts"),
                f"{ch} contacts received in the last {w} days",
                f"{{value}} {ch} contact{{s}} in the last {w} days",
            ),
            Feature(
                opens,
                count(event("open", channel=ch), window=w),
                f"{ch} opens in the last {w} days",
                f"{{value}} {ch} open{{s}} in the last {w} days",
            ),
            Feature(
                clicks,
                count(event("click", channel=ch), window=w),
                f"{ch} clicks in the last {w} days",
                f"{{value}} {ch} click{{s}} in the last {w} days",
            ),
        ]
        for what, col in (("open", opens), ("click", clicks)):
            out.append(
                Feature(
                    f"{what}_rate_{s}_{w}d",
                    pl.when(pl.col(sent) > 0).then(pl.col(col).cast(pl.Float64) / pl.col(sent)),
                    f"{ch} {what}s per {ch} contact received in the last {w} days (null without contacts)",
                    f"{{value}} {ch} {what}s per contact in the last {w} days",
                    fmt=".2f",
                    missing=f"no {ch} contact in the last {w} days",
                )
            )
    return out


@register_family("contact_pressure")
def contact_pressure(ctx: FamilyContext) -> list[Feature]:
    """Contacts received in the last 7 and 30 days (configurable), overall and per channel."""
    if not ctx.has_contacts:
        return []
    out: list[Feature] = []
    for w in ctx.pressure_windows:
        out.append(
            Feature(
                f"contacts_{w}d",
                count(window=w, source="contacts"),
                f"Contacts on any channel in the last {w} days",
                f"{{value}} contact{{s}} in the last {w} days",
            )
        )
        for ch in ctx.contact_channels:
            out.append(
                Feature(
                    f"contacts_{slug(ch)}_{w}d",
                    count(pl.col("channel") == ch, window=w, source="contacts"),
                    f"{ch} contacts received in the last {w} days",
                    f"{{value}} {ch} contact{{s}} in the last {w} days",
                )
            )
    return out
