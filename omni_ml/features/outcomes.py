"""What followed direct mail and calls: code redemptions and call outcomes (family ``contact_outcomes``).

Direct mail and calls leave no opens or clicks; what a business logs about them is whether the
mail's code was redeemed (events ``redeem`` on channel ``direct_mail``) and how each call went (events
``no_answer``, ``reached``, ``interested`` on channel ``call_center``; data/README.md). Both are
person-level evidence of responsiveness, so the counts run over the whole history before the cutoff
(a trait, not a recent state) and the rates are per contact received. Without such events the
counts are 0 and the rates null (no redemption logged is not the same as none possible).
"""

from __future__ import annotations

import polars as pl

from omni_ml.features._registry import register_family
from omni_ml.features._spec import FamilyContext, Feature, count, days_since_last, event

__all__ = ["ANSWERED", "CALL_OUTCOMES", "REDEEM"]

REDEEM = "redeem"
CALL_OUTCOMES: tuple[str, ...] = ("no_answer", "reached", "interested")
ANSWERED: tuple[str, ...] = ("reached", "interested")
_MAIL, _CALL = "direct_mail", "call_center"


@register_family("contact_outcomes")
def contact_outcomes(ctx: FamilyContext) -> list[Feature]:
    """Mail-code redemptions per mail and answered / interested calls per call, over the whole history."""
    if not ctx.has_contacts:
        return []
    out: list[Feature] = [
        Feature("__mail_sent_all", count(pl.col("channel") == _MAIL, source="contacts"), "Mail pieces (helper)"),
        Feature("__calls_all", count(pl.col("channel") == _CALL, source="contacts"), "Calls (helper)"),
        Feature(
            "mail_redemptions",
            count(event(REDEEM, channel=_MAIL)),
            "Direct-mail codes redeemed (whole history)",
            "redeemed {value} direct-mail code{s}",
        ),
        Feature(
            "days_since_last_redemption",
            days_since_last(event(REDEEM, channel=_MAIL)),
            "Days since the last direct-mail code was redeemed",
            "{value} day{s} since redeeming a direct-mail code",
            missing="never redeemed a direct-mail code",
        ),
        Feature(
            "calls_answered",
            count(event(ANSWERED, channel=_CALL)),
            "Call-centre contacts answered (whole history)",
            "answered {value} call{s} from the call centre",
        ),
        Feature(
            "calls_interested",
            count(event("interested", channel=_CALL)),
            "Call-centre contacts that ended with the customer interested (whole history)",
            "was interested on {value} call{s} from the call centre",
        ),
    ]
    mail, calls = pl.col("__mail_sent_all"), pl.col("__calls_all")
    answered = pl.col("calls_answered")
    out += [
        Feature(
            "redeem_rate_direct_mail",
            pl.when(mail > 0).then(pl.col("mail_redemptions").cast(pl.Float64) / mail),
            "Direct-mail codes redeemed per mail piece received (null without mail)",
            "redeemed {value} of the direct-mail codes received",
            fmt=".0%",
            missing="never received direct mail",
        ),
        Feature(
            "answer_rate_call_center",
            pl.when(calls > 0).then(answered.cast(pl.Float64) / calls),
            "Share of call-centre contacts answered (null without calls)",
            "answered {value} of the calls from the call centre",
            fmt=".0%",
            missing="never called by the call centre",
        ),
        Feature(
            "interest_rate_call_center",
            pl.when(answered > 0).then(pl.col("calls_interested").cast(pl.Float64) / answered),
            "Share of answered calls that ended with the customer interested (null without an answered call)",
            "was interested on {value} of the answered calls",
            fmt=".0%",
            missing="never answered a call from the call centre",
        ),
    ]
    return out
