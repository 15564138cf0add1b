"""Recognise the customer across channels: identity resolution and consent state as of any date.

Identity resolution (:func:`resolve`, :func:`resolve_identities`)
------------------------------------------------------------------
Identifiers are typed strings ``TYPE:VALUE`` (``email:ann@x.dk``, ``cookie:9f2c``,
``crm:C0001``). The identifiers form a graph: an edge for each row of
``identity_links`` seen strictly before ``as_of`` and, with ``IdentityRules.row_links``,
for each row of events/contacts/consents carrying both a ``customer_id`` X and an
``identifier`` (the row says the identifier belongs to ``crm:X``). The rules, in order:

1. **Primary ids.** An identifier of the primary type (``crm``) *is* a customer id:
   ``crm:X`` <=> customer ``X``. A row with a customer_id keeps it.
2. **Quarantine.** An identifier whose degree exceeds the cap of its type
   (:class:`IdentityRules`), or that is listed explicitly, loses all its edges: a household
   phone or a shop's default loyalty card must not glue strangers together. It becomes its
   own customer. The degree counts distinct linked identifiers except those of the
   ``uncounted_types`` (browser cookies: an email legitimately collects a new one every
   few weeks); all distinct neighbours together are capped by ``max_total_degree``. The
   primary type is uncapped unless ``max_degree`` names it; unknown types get
   ``default_max_degree``.
3. **Primary-primary links are not merges.** A direct link between two primary ids is
   reported and ignored: merging two CRM records is the CRM's decision.
4. **Components.** Connected components of the remaining graph (scipy sparse
   ``connected_components``). A component with exactly one primary id gets that id; one
   without a primary id gets an anonymous id (rule 7).
5. **Conflicts.** A component holding two or more primary ids is *not* merged. Each other
   identifier goes to its nearest primary id (fewest hops, breadth-first from all primary
   ids at once); an identifier equally near to two customers, or reached only through
   such an identifier, is *ambiguous* and becomes its own customer.
6. **Oversize components** (more than ``max_component_size`` identifiers) are reported and
   not trusted: only identifiers directly linked to exactly one primary id join it; every
   other identifier of the component becomes its own customer.
7. **Stable anonymous ids.** A group without a primary id is named
   ``anon-<HMAC-SHA-256(key, anchor)[:16]>`` (a keyed hash: the key is a secret from the
   environment, see :mod:`omni_ml._privacy`; without one this is an error unless unsalted ids
   are asked for explicitly); the anchor is the group's earliest-seen identifier
   (earliest timestamp in links or rows before ``as_of``, ties by identifier). Newer
   identifiers and links therefore never rename a group, and when two groups merge the
   older one's id survives. With ``previous`` (an earlier map), an anonymous group keeps
   the earlier ``anon-`` id held by its earliest-seen identifier that had one (each
   earlier id goes to one group only), so a rerun does not renumber anyone even when the
   data was backfilled. The prefix ``anon-`` is reserved for these ids.

Identifiers never linked are kept as their own customers: nothing is dropped.

Consent (:func:`consent_state`)
-------------------------------
Consent is event-sourced (DESIGN.md section 4): the state of a (customer, channel) at ``t``
is the latest consent record strictly before ``t``; records at the same instant
resolve to *withdrawn* (the safe reading); no record means not granted for outbound
channels (``default``, configurable).
"""

from __future__ import annotations

from omni_ml.identity._forget import ForgetReport, forget
from omni_ml.identity._resolve import ensure_resolved, pairwise_merge_scores, resolve, resolve_identities
from omni_ml.identity._rules import ANON_PREFIX, IdentityReport, IdentityRules
from omni_ml.identity.consent import consent_state, require_resolved

__all__ = [
    "ANON_PREFIX",
    "ForgetReport",
    "IdentityReport",
    "IdentityRules",
    "consent_state",
    "ensure_resolved",
    "forget",
    "pairwise_merge_scores",
    "require_resolved",
    "resolve",
    "resolve_identities",
]
