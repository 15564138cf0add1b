"""Who the customer is: consent flags as of the cutoff and static customer attributes.

Families ``consent`` (``consent_<channel>``: 1 if granted as of the cutoff, by
:func:`omni_ml.identity.consent_state`; needs a consents table) and ``customer`` (every
usable column of the customers table: numbers as-is, booleans 0/1, dates as days before the
cutoff (null when not before it), strings as integer codes whose vocabulary is stored in the
:class:`~omni_ml.features.FeatureSet`).
"""

from __future__ import annotations

from omni_ml.features._registry import register_family
from omni_ml.features._spec import Consent, FamilyContext, Feature, slug

__all__: list[str] = []


@register_family("consent")
def consent(ctx: FamilyContext) -> list[Feature]:
    """One 0/1 flag per contactable channel: consent granted as of the cutoff."""
    return [
        Feature(
            f"consent_{slug(ch)}",
            Consent(ch),
            f"1 if the customer consented to {ch} contact as of the cutoff",
            f"{ch} consent {{value}}",
        )
        for ch in ctx.consent_channels
    ]


@register_family("customer")
def customer(ctx: FamilyContext) -> list[Feature]:
    """Static attributes of the customers table, encoded as numbers."""
    out: list[Feature] = []
    for attr in ctx.attributes:
        name = f"attr_{slug(attr.column)}"
        said = attr.column.replace("_", " ").strip()  # in reasons: "signup date 313 days ago"
        if attr.kind == "date":
            out.append(
                Feature(
                    f"{name}_days",
                    attr,
                    f"Days from {attr.column} to the cutoff (null if not before it)",
                    f"{said} {{value}} day{{s}} ago",
                    missing=f"{said} unknown",
                )
            )
        elif attr.kind == "code":
            out.append(
                Feature(
                    name,
                    attr,
                    f"{attr.column} (integer code; {len(attr.levels)} levels stored in the feature set)",
                    f"{said} is {{value}}",
                    missing=f"{said} unknown",
                )
            )
        else:
            out.append(
                Feature(
                    name,
                    attr,
                    f"{attr.column} ({attr.kind})",
                    f"{said} is {{value}}",
                    fmt=",.4g",
                    missing=f"{said} unknown",
                )
            )
    return out
