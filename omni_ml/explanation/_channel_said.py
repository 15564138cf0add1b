"""Why this channel, in words a person would write: the customer's own history with it, and its cost.

:func:`explain_channel_reasons` explains "contact on ``c`` rather than not" for each contacted row:

* **the customer's history with the channel**, from the channel model's inputs: ``"opened 4 of 6
  e-mails in the last 365 days"`` (opens, clicks and contacts of the channel's engagement window),
  ``"bought within 7 days after 2 of 3 direct-mail offers"`` (the response-history columns: contacts
  whose response window has closed and the purchases within it), and, when the contacts table logs
  call outcomes (a column ``outcome`` with ``reached``/``interested``/``no_answer``),
  ``"answered 2 of 3 calls in the last 365 days"`` or, for another channel, ``"no answer to 2 calls
  in the last 365 days"``;
* **other behaviour** that makes the contact pay off (one reason per family, as for the propensity:
  ``"4 days since the last purchase"``);
* **the rule of the choice**, cost or consent: ``"sms is allowed and costs 0.08; direct mail would
  cost 0.90"``, ``"email is the only channel they can be contacted on"``, or, when the chosen channel
  is the dearer one, its expected value net of cost against the runner-up's.

Contributions are the channel model's SHAP values of the log-odds uplift (contact on ``c`` minus no
contact), with the model conditioned on the moment's as-of-constant features (as in
:mod:`omni_ml.explanation._said`), summed per family and scaled to percentage points of conversion by the
secant between ``P(convert | no contact)`` and ``P(convert | contact on c)``: the shown parts plus
``channel_reason_other_pp`` add up to the estimated uplift. Only families that *raise* the uplift are
reasons, a history reason only when the history is favourable (at least one purchase after a contact,
at least one open or click), and the arm itself (the part no customer feature explains, "contact by
sms") never is: it stays in "other factors". The cost/consent reason carries no pp (it is a rule of the
policy, not a part of the uplift); every contacted row has it, so no contacted row is left without a
reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from omni_ml._time import window
from omni_ml.explanation._channel import _ChannelDescriber
from omni_ml.explanation._families import as_of_constant, codes_of, feature_index, reason_family
from omni_ml.explanation._reasons import _keys_frame, _render_one, explainer_for
from omni_ml.explanation._said import _slope, format_pp, moment_shap, render_unique, rounded_values, select_reasons
from omni_ml.features._spec import slug as feature_slug

__all__ = ["MIN_PP", "call_outcomes", "explain_channel_reasons"]

_RESPONSE = re.compile(r"^resp_(contacts|conversions|rate|expected|excess|lift)_(.+)$")
_NOUNS = {
    "email": "e-mails",
    "sms": "text messages",
    "push": "push messages",
    "direct_mail": "direct-mail offers",
    "call_center": "calls",
}
_ANSWERED = ("reached", "interested")
#: Behavioural channel reasons smaller than this many percentage points of conversion are not shown.
MIN_PP = 0.01


def _noun(channel: str) -> str:
    return _NOUNS.get(channel, f"{channel.replace('_', ' ')} contacts")


def _said_channel(channel: str) -> str:
    return channel.replace("_", " ")


def _window_words(days: int) -> str:
    return "a week" if days == 7 else f"{days} day{'' if days == 1 else 's'}"


def _channel_family(feature: str, feature_set: Any, constant: set[str]) -> str | None:
    if feature == "arm" or feature in constant:
        return None
    found = _RESPONSE.match(feature)
    if found:
        return f"history_{found.group(2)}"
    if feature.startswith("resp_baseline_"):
        return "frequency"
    known = feature_index(feature_set).get(feature)
    return reason_family(feature, known.family if known is not None else feature)


def call_outcomes(hist: Any, moment: dt.datetime, customers: pl.Series, window_days: int = 365) -> pl.DataFrame | None:
    """Per customer (in order): call-centre outcomes in ``[moment - window, moment)``: calls, answered, unanswered.

    Call outcomes are events on channel ``call_center`` of type ``no_answer``, ``reached`` or ``interested``
    (one per call, data contract). ``None`` when the events hold no call outcome at all (not logged).
    """
    events = getattr(hist, "events", None)
    if events is None:
        return None
    is_outcome = (pl.col("channel") == "call_center") & pl.col("event_type").is_in([*_ANSWERED, "no_answer"])
    if events.filter(is_outcome).head(1).collect().height == 0:
        return None
    calls = (
        events.filter(is_outcome & window(moment - dt.timedelta(days=window_days), end=moment))
        .group_by("customer_id")
        .agg(
            calls=pl.len().cast(pl.Int64),
            answered=pl.col("event_type").is_in(list(_ANSWERED)).sum().cast(pl.Int64),
            no_answer=(pl.col("event_type") == "no_answer").sum().cast(pl.Int64),
        )
        .collect()
    )
    return (
        customers.to_frame("customer_id")
        .join(calls, on="customer_id", how="left", maintain_order="left")
        .with_columns(pl.col("calls", "answered", "no_answer").fill_null(0))
    )


def _value(frame: pl.DataFrame, name: str) -> npt.NDArray[np.float64]:
    if name not in frame.columns:
        return np.full(frame.height, np.nan)
    return frame[name].cast(pl.Float64).to_numpy()


def _history_text(noun: str, conversions: float, contacts: float, window_days: int) -> str:
    return f"bought within {_window_words(window_days)} after {int(conversions)} of {int(contacts)} {noun}"


def _engagement_text(channel: str, opens: float, clicks: float, sent: float, w: int) -> str:
    noun = _noun(channel)
    if clicks >= 1 and clicks <= sent:
        return f"clicked {int(clicks)} of {int(sent)} {noun} in the last {w} days"
    if opens <= sent:
        return f"opened {int(opens)} of {int(sent)} {noun} in the last {w} days"
    return f"{int(opens)} opens of {int(sent)} {noun} in the last {w} days"


def _policy_reasons(
    channel: str, scores: pl.DataFrame | None, costs: dict[str, float]
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """The cost/consent reason of each row that chose ``channel`` (``scores``: its rows' ``score_<c>``)."""
    said = _said_channel(channel)
    only = f"{said} is the only channel they can be contacted on"
    if scores is None or scores.height == 0:
        n = 0 if scores is None else scores.height
        return np.full(n, only, dtype=object), np.full(n, "ONLY_CONSENT", dtype=object)
    n = scores.height
    names = sorted(c.removeprefix("score_") for c in scores.columns if c.startswith("score_"))
    values = np.column_stack([scores[f"score_{c}"].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in names])
    others = values.copy()
    if channel in names:
        others[:, names.index(channel)] = np.nan
    has_other = ~np.isnan(others).all(axis=1)
    runner = np.argmax(np.where(np.isnan(others), -np.inf, others), axis=1)
    mine = values[:, names.index(channel)] if channel in names else np.full(n, np.nan)
    cost = costs.get(channel)
    texts = np.full(n, only, dtype=object)
    codes = np.full(n, "ONLY_CONSENT", dtype=object)
    for r, other in enumerate(names):
        rows = has_other & (runner == r)
        if not rows.any():
            continue
        other_cost = costs.get(other)
        if cost is not None and other_cost is not None and cost < other_cost:
            texts[rows] = f"{said} is allowed and costs {cost:.2f}; {_said_channel(other)} would cost {other_cost:.2f}"
            codes[rows] = "COST_LOWER"
            continue
        after = "" if cost is None else f" after its cost of {cost:.2f}"
        for i in np.flatnonzero(rows).tolist():
            theirs = f"{_said_channel(other)} ({others[i, r]:.2g})"
            texts[i] = f"{said} is expected to earn {mine[i]:.2g}{after}, more than {theirs}"
        codes[rows] = "VALUE_HIGHER"
    return texts, codes


def explain_channel_reasons(
    model: Any,
    X: pl.DataFrame,
    channels: Sequence[str | None] | pl.Series,
    *,
    scores: pl.DataFrame | None = None,
    costs: dict[str, float] | None = None,
    top_k: int = 3,
    keys: pl.DataFrame | Sequence[Any] | None = None,
    reference: dict[str, float] | None = None,
    calls: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Top-k reasons per row for contacting on that row's channel rather than not (see the module docstring).

    Parameters
    ----------
    model
        A fitted :class:`~omni_ml.models.ChannelModel`.
    X
        Its input rows (:func:`omni_ml.models.channel.channel_features`), a polars DataFrame.
    channels
        Per row, the chosen channel; ``None``/``"no_contact"``/an unestimated channel get null reasons.
    scores
        Per row, ``score_<channel>`` (expected value net of cost; null where the channel is not allowed):
        the cost/consent reason compares the chosen channel with the best other allowed one.
    costs
        Cost per contact of each channel (the policy's).
    top_k
        Reasons per row; the cost/consent reason takes the last slot when ``top_k`` > 1.
    keys
        Row identifiers put first (default: a ``row`` index).
    reference
        Feature medians for the levels of behavioural reason codes (:func:`reference_medians`).
    calls
        Per row ``calls``, ``answered``, ``no_answer`` (:func:`call_outcomes`), or ``None``.

    Returns
    -------
    polars.DataFrame
        Keys, ``channel``, ``uplift`` (``P(convert | c) - P(convert | no contact)``),
        ``channel_reason_1..k``, ``channel_reason_code_1..k``, ``channel_reason_pp_1..k`` (null for rule
        and call-outcome reasons), ``channel_reason_feature_1..k`` (the feature quoted, ``;``-separated
        when two) and ``channel_reason_other_pp``: ``sum(pp) + other_pp == 100 * uplift``.
    """
    if top_k < 1:
        msg = f"top_k must be at least 1, got {top_k}."
        raise ValueError(msg)
    wanted = pl.Series("channel", list(channels), dtype=pl.String)
    n = wanted.len()
    key_frame = _keys_frame(X, keys, n)
    if X.height != n:
        msg = f"X has {X.height:,} rows but channels has {n:,}. Hint: one channel per row of X."
        raise ValueError(msg)
    fs = getattr(model, "feature_set_", None)
    costs = dict(costs or {})
    texts = np.full((n, top_k), None, dtype=object)
    codes = np.full((n, top_k), None, dtype=object)
    pps = np.full((n, top_k), np.nan)
    feats = np.full((n, top_k), None, dtype=object)
    uplift = np.full(n, np.nan)
    other = np.full(n, np.nan)
    window = int(getattr(model, "training_summary_", {}).get("window_days", 7))
    w = int(fs.config.engagement_window) if fs is not None else 365
    for channel in model.channels_:
        index = (wanted == channel).fill_null(False).arg_true().to_numpy()
        if index.size == 0:
            continue
        booster_c, x_c, booster_0, x_0 = model.arm_inputs(X[index], channel)
        names = explainer_for(booster_c).feature_names
        shown_as = model.explanation_names(channel)
        features = [shown_as.get(b, b) for b in names]
        constant_features = set(as_of_constant(fs, [f for f in features if f != "arm"]))
        constant = [b for b, f in zip(names, features, strict=True) if f in constant_features]
        phi_c, base_c = moment_shap(booster_c, x_c, names, constant)
        phi_0, base_0 = moment_shap(booster_0, x_0, names, constant)
        raw_c = phi_c.sum(axis=1) + base_c
        raw_0 = phi_0.sum(axis=1) + base_0
        p_c = 1.0 / (1.0 + np.exp(-raw_c))
        p_0 = 1.0 / (1.0 + np.exp(-raw_0))
        sigmoid = lambda r: 1.0 / (1.0 + np.exp(-np.asarray(r, dtype=np.float64)))  # noqa: E731
        # the secant from "no contact" to "contact on c", both sides exact
        slope = _slope(sigmoid, raw_c, raw_0, p_c, p_0)
        diff = phi_c - phi_0
        families = [_channel_family(f, fs, constant_features) for f in features]
        families = _speaking_families(families, channel)
        describer = _ChannelDescriber(fs, shown_as, channel)
        labels, fam_sum, order, shown, valid = select_reasons(
            phi=diff, x=x_c, families=families, top_k=len({f for f in families if f}) or 1, direction=1
        )
        rows_frame = X[index]
        n_c = index.size
        rows = np.arange(n_c)[:, None]
        chosen_lo = fam_sum[rows, order]
        chosen_pp = 100.0 * chosen_lo * slope[:, None]
        fam_of = np.array(labels, dtype=object)[order]
        text, code, feat, ok = _response_candidates(rows_frame, channel, valid, fam_of, window, w)
        _add_behaviour_candidates(
            (text, code, feat, ok),
            (labels, order, shown, valid),
            x_c[rows, shown],
            chosen_pp,
            fs=fs,
            names=names,
            features=features,
            describer=describer,
            reference=reference,
        )
        # the first k_shap acceptable candidates of each row, in rank order
        k_shap = top_k - 1 if top_k > 1 else 1
        rank = np.cumsum(ok, axis=1)
        take = ok & (rank <= k_shap)
        numbers = format_pp(chosen_pp, chosen_lo)
        slot_of = np.where(take, rank - 1, -1)
        out_i, out_c = np.nonzero(take)
        slots = slot_of[out_i, out_c]
        targets = index[out_i]
        texts[targets, slots] = text[out_i, out_c] + " (" + numbers[out_i, out_c] + ")"
        codes[targets, slots] = code[out_i, out_c]
        pps[targets, slots] = chosen_pp[out_i, out_c]
        feats[targets, slots] = feat[out_i, out_c]
        used = take.sum(axis=1)
        shown_pp = np.where(take, chosen_pp, 0.0).sum(axis=1)
        # call outcomes (outcome events of call_center contacts), after the SHAP reasons while a slot is free
        if calls is not None:
            _call_reasons(calls, index, channel, used, k_shap, (texts, codes, feats))
        # the rule of the choice: cost or consent (always there, so no contacted row is left without a reason)
        part = scores[index.tolist()] if scores is not None else None
        _rule_reason(channel, index, part, costs, used, (texts, codes, feats))
        uplift[index] = p_c - p_0
        other[index] = 100.0 * (p_c - p_0) - shown_pp
    frame = _reason_frame(wanted, uplift, other, (texts, codes, pps, feats), top_k)
    return pl.concat([key_frame, frame], how="horizontal")


def _add_behaviour_candidates(
    candidates: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    selected: tuple[list[str], np.ndarray, np.ndarray, np.ndarray],
    raw_values: np.ndarray,
    chosen_pp: np.ndarray,
    *,
    fs: Any,
    names: list[str],
    features: list[str],
    describer: Any,
    reference: dict[str, float] | None,
) -> None:
    """Add reasons from other behaviour that makes the contact pay off to the candidates (text, code, feature, ok).

    ``selected`` is what :func:`select_reasons` chose (family labels, their order, shown feature, valid); a
    behaviour reason needs a value, a code that is not ``*_NONE`` and at least ``MIN_PP`` of effect.
    """
    text, code, feat, ok = candidates
    labels, order, shown, valid = selected
    shown_values = rounded_values(fs, features, shown, raw_values)
    behaviour_codes = np.array(
        codes_of(
            names,
            shown.reshape(-1),
            order.reshape(-1),
            shown_values.reshape(-1),
            labels,
            None
            if reference is None
            else {b: reference[f] for b, f in zip(names, features, strict=True) if f in reference},
        ),
        dtype=object,
    ).reshape(order.shape)
    # other behaviour that makes the contact pay off
    is_behaviour = np.array([not (f.startswith(("history_", "engagement_"))) for f in labels], dtype=bool)[order]
    good = (
        valid
        & is_behaviour
        & ~np.isnan(shown_values)
        & ~np.char.endswith(behaviour_codes.astype(str), "_NONE")
        & (np.abs(chosen_pp) >= MIN_PP)
    )
    where = np.nonzero(good)
    keys = pl.DataFrame({"j": shown[where], "v": shown_values[where]})
    text[where] = np.array(
        render_unique(keys, lambda j, v, d=describer, b=names: _render_one(d, b[j], v)), dtype=object
    )
    code[where] = behaviour_codes[where]
    feat[where] = np.array(features, dtype=object)[shown[where]]
    ok |= good  # in place: the caller's array


def _rule_reason(
    channel: str,
    index: np.ndarray,
    scores: pl.DataFrame | None,
    costs: dict[str, float],
    used: np.ndarray,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Put the policy's rule (cost or consent) in the slot after each row's reasons (the last slot when full)."""
    texts, codes, feats = out
    top_k = texts.shape[1]
    rule_text, rule_code = _policy_reasons(channel, scores, costs)
    free = ~((top_k == 1) & (used >= 1))
    rule_slot = np.minimum(used, top_k - 1)[free]
    texts[index[free], rule_slot] = rule_text[free]
    codes[index[free], rule_slot] = rule_code[free]
    feats[index[free], rule_slot] = "policy"


def _speaking_families(families: list[str | None], channel: str) -> list[str | None]:
    """Families that may speak for ``channel`` (its own history, behaviour; not consent, not others'), else None."""
    allowed_family = [
        f is not None
        and f != "consent"
        and not (f.startswith("engagement_") and f != f"engagement_{channel}")
        and not (f.startswith("history_") and f not in (f"history_{channel}", "history_all"))
        for f in families
    ]
    families = [f if ok else None for f, ok in zip(families, allowed_family, strict=True)]
    return families


def _response_candidates(
    rows_frame: pl.DataFrame, channel: str, valid: np.ndarray, fam_of: np.ndarray, window: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reasons from the customer's responses: past conversions after contacts, opens and clicks of the channel.

    Arrays shaped like ``fam_of`` (rows x ranked candidates): text, code, feature and whether it is usable.
    """
    n_c, m = fam_of.shape
    text = np.full((n_c, m), None, dtype=object)
    code = np.full((n_c, m), None, dtype=object)
    feat = np.full((n_c, m), None, dtype=object)
    ok = np.zeros((n_c, m), dtype=bool)
    # the customer's history with the channel (and with any channel)
    for h in (channel, "all"):
        conv, cont = _value(rows_frame, f"resp_conversions_{h}"), _value(rows_frame, f"resp_contacts_{h}")
        is_h = valid & (fam_of == f"history_{h}")
        good = is_h & ((conv >= 1) & (cont >= 1))[:, None]
        noun = "contacts on any channel" if h == "all" else _noun(channel)
        where = np.nonzero(good)
        keys = pl.DataFrame({"k": conv[where[0]], "n": cont[where[0]]})
        text[where] = np.array(
            render_unique(keys, lambda k, n, noun=noun: _history_text(noun, k, n, window)), dtype=object
        )
        code[where] = "ANY_RESPONDED" if h == "all" else f"{channel.upper()}_RESPONDED"
        feat[where] = f"resp_conversions_{h};resp_contacts_{h}"
        ok |= good
    # opens and clicks of the channel's messages
    slug = feature_slug(channel)
    opens = _value(rows_frame, f"opens_{slug}_{w}d")
    clicks = _value(rows_frame, f"clicks_{slug}_{w}d")
    sent = _value(rows_frame, f"contacts_{slug}_{w}d")
    engaged = (sent >= 1) & ((opens >= 1) | (clicks >= 1))
    good = valid & (fam_of == f"engagement_{channel}") & engaged[:, None]
    where = np.nonzero(good)
    keys = pl.DataFrame({"o": opens[where[0]], "c": clicks[where[0]], "s": sent[where[0]]})
    said_e = np.array(render_unique(keys, lambda o, c, n, ch=channel: _engagement_text(ch, o, c, n, w)), dtype=object)
    text[where] = said_e
    code[where] = f"{channel.upper()}_ENGAGED"
    clicked = np.array([t.startswith("clicked") for t in said_e.tolist()], dtype=bool)
    feat[where] = np.where(
        clicked, f"clicks_{slug}_{w}d;contacts_{slug}_{w}d", f"opens_{slug}_{w}d;contacts_{slug}_{w}d"
    )
    ok |= good
    return text, code, feat, ok


def _call_reasons(
    calls: pl.DataFrame,
    index: np.ndarray,
    channel: str,
    used: np.ndarray,
    k_shap: int,
    out: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Give rows with fewer than ``k_shap`` reasons the outcome of their calls, in their next free slot.

    ``out`` holds the texts, codes and features by slot; ``used`` counts each row's filled slots and is updated.
    """
    texts, codes, feats = out
    part = calls[index.tolist()]
    answered = part["answered"].to_numpy()
    unanswered = part["no_answer"].to_numpy()
    n_calls = part["calls"].to_numpy()
    for r in np.flatnonzero(used < k_shap).tolist():
        if channel == "call_center" and answered[r] >= 1:
            t, cd = f"answered {answered[r]} of {n_calls[r]} calls in the last 365 days", "CALL_CENTER_ANSWERED"
        elif channel != "call_center" and unanswered[r] >= 1:
            s_ = "" if unanswered[r] == 1 else "s"
            t, cd = f"no answer to {unanswered[r]} call{s_} in the last 365 days", "CALL_CENTER_NO_ANSWER"
        else:
            continue
        i = int(index[r])
        texts[i, int(used[r])], codes[i, int(used[r])], feats[i, int(used[r])] = t, cd, "calls"
        used[r] += 1


def _reason_frame(
    wanted: pl.Series,
    uplift: np.ndarray,
    other: np.ndarray,
    slots: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    top_k: int,
) -> pl.DataFrame:
    """``channel, uplift, channel_reason_{,code_,pp_,feature_}1..K, channel_reason_other_pp`` (NaN as null)."""
    texts, codes, pps, feats = slots
    columns: dict[str, Any] = {"channel": wanted.to_list(), "uplift": uplift}
    for slot in range(top_k):
        columns[f"channel_reason_{slot + 1}"] = pl.Series(texts[:, slot].tolist(), dtype=pl.String)
        columns[f"channel_reason_code_{slot + 1}"] = pl.Series(codes[:, slot].tolist(), dtype=pl.String)
        columns[f"channel_reason_pp_{slot + 1}"] = pl.Series(pps[:, slot]).fill_nan(None)
        columns[f"channel_reason_feature_{slot + 1}"] = pl.Series(feats[:, slot].tolist(), dtype=pl.String)
    columns["channel_reason_other_pp"] = pl.Series(other).fill_nan(None)
    frame = pl.DataFrame(columns, schema_overrides={"channel": pl.String, "uplift": pl.Float64})
    frame = frame.with_columns(pl.col("uplift").fill_nan(None))
    return frame
