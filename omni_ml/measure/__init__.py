"""Measure a campaign at the customer level against its randomly held-out control group; feed sends back.

**What is compared.** :func:`omni_ml.scoring.score` holds out a random ``control_group`` (a stable
hash of the customer id and the campaign seed) and keeps the model's recommendation of every
held-out customer in ``recommended_channel``. :func:`measure_campaign` compares like with like:
among the customers whose recommendation was a contact (``recommended_channel != "no_contact"``),
*treated* = not held out (the contact was sent) and *control* = held out. Because the hold-out is
random given the recommendation, the difference of the group means is an unbiased estimate of the
**average effect of the recommended contact on the customers the policy chose to contact**
(intention to treat: a treated customer whose message bounced still counts as treated). Customers the
policy would not have contacted are not compared (they were treated identically in both groups). In a
file scored with exploration (``score --explore``), the rows whose action exploration drew (rule
``explore``) are left out of the treated group (:attr:`MeasureReport.explored_left_out`): their action
was random, not the policy's; the draw is an independent hash uniform, so the rest of the treated group
stays a random sample and the estimate is the policy's effect.

**Outcomes** are read from the events in ``[as_of, as_of + window_days)`` (``as_of`` of the campaign
file): ``converted`` = at least one purchase, ``revenue`` = the sum of purchase amounts (0 without a
purchase). Every eligible customer gets an outcome; a customer without events in the window did not
buy. Events without a ``customer_id`` are identity-resolved first.

**Statistics**, per segment (overall, per recommended channel, per propensity decile):

* group means, their difference ``diff = mean_treated - mean_control``;
* a Welch interval ``diff +- t_{1-alpha/2, nu} * sqrt(s_t^2/n_t + s_c^2/n_c)`` with the
  Welch-Satterthwaite degrees of freedom ``nu`` (the normal approximation for large groups; unequal
  variances and unequal group sizes are the normal case for a 10 % hold-out) and its two-sided p-value;
* a seeded percentile bootstrap interval (``n_boot`` resamples of each group separately, with
  replacement; the random stream of a segment depends only on ``seed`` and the segment's name, so the
  same inputs give the same bytes);
* ``incremental_conversions = diff_conversion x n_treated`` and ``incremental_revenue =
  diff_revenue x n_treated`` (what the contacts sent added), the cost of those contacts and
  ``incremental_revenue_per_cost`` (revenue return per unit of contact cost; > 1 pays off before margin).

**Balance check** (:attr:`MeasureReport.balance`): standardised mean differences
``(mean_t - mean_c) / sqrt((var_t + var_c) / 2)`` of pre-campaign purchases, revenue and recency (days
since the last purchase, ``pre_days`` when none) in ``[as_of - pre_days, as_of)``, overall and per
channel. ``|SMD| > 0.1`` is flagged: the groups differed before the campaign, so the hold-out was
probably not random (or a segment is tiny).

**The feedback round trip** (section 2 of issue 12)::

    campaign file --(sent)--> feedback_contacts() --> append_contacts(DIR) --> DIR/contacts.parquet
         ^                                                                            |
         |                                                                            v
    omni-ml score <-- CampaignModel.fit (channel model trains on contacts,  <-- load_histories(DIR)
                      off-policy evaluation weights by assignment_probability)

:func:`feedback_contacts` turns the contacts actually sent (the campaign file's ``best_channel``, or
a log of sends) into rows of the contacts table. ``assignment_probability`` is the probability that
the deployed policy *and* the control randomisation chose the logged action for that customer: the
policy is deterministic given the customer's history, and a customer is held out with probability
``control_fraction`` independently of everything else, so a sent contact has probability
``1 - control_fraction``. (Held-out customers got no contact, which the contacts table does not
record; the channel model sees them as not contacted, with probability ``control_fraction``.)
:func:`append_contacts` appends them to a histories directory atomically (write a temporary file,
then rename), refusing to append the same campaign twice.
"""

from __future__ import annotations

# NO_CONTACT and SMD_THRESHOLD stay importable from here as before the split.
from omni_ml.measure._campaign import balance_table, measure_campaign
from omni_ml.measure._feedback import append_contacts, feedback_contacts
from omni_ml.measure._inputs import NO_CONTACT, read_campaign
from omni_ml.measure._report import SMD_THRESHOLD, MeasureReport
from omni_ml.measure._stats import diff_in_means
from omni_ml.measure._writers import write_report

__all__ = [
    "NO_CONTACT",
    "SMD_THRESHOLD",
    "MeasureReport",
    "append_contacts",
    "balance_table",
    "diff_in_means",
    "feedback_contacts",
    "measure_campaign",
    "read_campaign",
    "write_report",
]
