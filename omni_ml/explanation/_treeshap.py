"""Fast exact path-dependent TreeSHAP for single-output LightGBM models.

The quantity computed is the one of ``lightgbm.Booster.predict(X, pred_contrib=True)`` and of
``shap.TreeExplainer(model)`` without background data ("tree_path_dependent"): the Shapley values of the
raw score (log-odds for a binary model) with the conditional expectation taken along each tree's training
data covers (Lundberg et al. 2020, "From local explanations to global understanding with explainable AI
for trees", Algorithm 2).

How it is made fast, exactly
----------------------------
A tree's SHAP values are a sum over its root-to-leaf paths (Mitchell et al. 2022, "GPUTreeShap").
Along one path, merge the splits on the same feature into one *path feature* ``j`` with a zero
fraction ``z_j`` (the product of the cover ratios child/parent of those splits) and a one fraction
``o_j`` in {0, 1} (1 when the row satisfies all of those splits). For a path with ``d`` features and
leaf value ``v`` the contribution to path feature ``i`` is::

    phi_i = v * (o_i - z_i) * sum_k  k! (d-1-k)! / d!  *  e_k({(z_j, o_j) : j != i})

with ``e_k`` the coefficient of ``t**k`` in ``prod_{j != i} (z_j + o_j t)``. It depends on the row only
through the bit mask of satisfied path features, so for every path with ``d <= max_table_depth`` the
contributions of all ``2**d`` masks are computed once per model (:func:`_fill_tables`). Explaining a
row then costs, per tree, one decision per internal node, one mask per leaf (a few bit operations) and
a table look-up of ``d`` numbers per leaf: O(leaves x depth) instead of O(leaves x depth**2) of
Algorithm 2. Longer paths (rare in 31-leaf trees) are computed per row by the same polynomial
arithmetic. Rows are processed in blocks in parallel with numba; within a block the loops run tree by
tree and path by path, so one path's table stays in cache for all rows of the block.

Identical rows get identical attributions, and so do rows that fall on the same side of every
threshold of the model. With ``dedupe=True`` (default) rows are first reduced to the model's
decision bins (the position of each value among that feature's split thresholds, plus NaN/zero
flags), only distinct bin rows are explained, and the result is expanded back. This is exact: two
rows with the same bins take the same branch at every node.

Missing values follow LightGBM: ``missing_type`` None (NaN is treated as 0), Zero (0 and NaN take the
default branch) and NaN (NaN takes the default branch); ``decision_type`` ``<=`` for numerical splits
and ``==`` (category-set membership) for categorical splits, where NaN and negative categories go right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["TreeShap"]

# LightGBM's kZeroThreshold is the float 1e-35f; values with |x| <= it are read as 0.
_ZERO_THRESHOLD = float(np.float32(1e-35))
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2
_BLOCK = 2048  # rows per parallel work item; large blocks reuse each path's table across rows


# --------------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _go_left(
    x: float,
    node: int,
    is_cat: npt.NDArray[np.bool_],
    threshold: npt.NDArray[np.float64],
    default_left: npt.NDArray[np.bool_],
    missing_type: npt.NDArray[np.int8],
    cat_start: npt.NDArray[np.int64],
    cat_len: npt.NDArray[np.int64],
    cat_words: npt.NDArray[np.uint32],
) -> bool:
    if is_cat[node]:
        if math.isnan(x):
            return False
        if x <= -1.0:
            return False
        if x >= 2147483647.0:
            return False
        iv = int(x)  # truncation towards zero, as static_cast<int>
        word = iv >> 5
        if word >= cat_len[node]:
            return False
        return ((cat_words[cat_start[node] + word] >> np.uint32(iv & 31)) & np.uint32(1)) == np.uint32(1)
    mt = missing_type[node]
    if math.isnan(x):
        if mt == _MISSING_NAN:
            return default_left[node]
        x = 0.0
    if -_ZERO_THRESHOLD <= x <= _ZERO_THRESHOLD:
        if mt == _MISSING_ZERO:
            return default_left[node]
        x = 0.0
    return x <= threshold[node]


@numba.njit(cache=True)
def _path_phi(
    z: npt.NDArray[np.float64],
    o: npt.NDArray[np.float64],
    d: int,
    v: float,
    weights: npt.NDArray[np.float64],
    poly: npt.NDArray[np.float64],
    quot: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> None:
    """Contributions of one path's ``d`` features for one pattern of one fractions ``o``."""
    for k in range(d + 1):
        poly[k] = 0.0
    poly[0] = 1.0
    for j in range(d):
        zj = z[j]
        oj = o[j]
        for k in range(j + 1, 0, -1):
            poly[k] = poly[k] * zj + poly[k - 1] * oj
        poly[0] = poly[0] * zj
    for i in range(d):
        zi = z[i]
        oi = o[i]
        if oi == 0.0 and zi == 0.0:
            out[i] = 0.0
            continue
        if oi != 0.0:
            # synthetic division by (z_i + t), from the top (stable for z_i in [0, 1])
            quot[d - 1] = poly[d]
            for k in range(d - 1, 0, -1):
                quot[k - 1] = poly[k] - zi * quot[k]
        else:
            for k in range(d):
                quot[k] = poly[k] / zi
        s = 0.0
        for k in range(d):
            s += weights[k] * quot[k]
        out[i] = v * (oi - zi) * s


@numba.njit(cache=True)
def _shapley_weights(d: int) -> npt.NDArray[np.float64]:
    w = np.empty(max(d, 1), np.float64)
    for k in range(d):
        w[k] = math.exp(math.lgamma(k + 1) + math.lgamma(d - k) - math.lgamma(d + 1))
    return w


@numba.njit(parallel=True, cache=True)
def _fill_tables(
    path_d: npt.NDArray[np.int64],
    path_feat_start: npt.NDArray[np.int64],
    path_z: npt.NDArray[np.float64],
    leaf_value: npt.NDArray[np.float64],
    table_start: npt.NDArray[np.int64],
    table: npt.NDArray[np.float64],
) -> None:
    n_paths = path_d.shape[0]
    for p in numba.prange(n_paths):
        if table_start[p] < 0:
            continue
        d = path_d[p]
        if d == 0:
            continue
        w = _shapley_weights(d)
        poly = np.empty(d + 1, np.float64)
        quot = np.empty(d, np.float64)
        o = np.empty(d, np.float64)
        res = np.empty(d, np.float64)
        z = path_z[path_feat_start[p] : path_feat_start[p] + d]
        for mask in range(1 << d):
            for j in range(d):
                o[j] = 1.0 if (mask >> j) & 1 else 0.0
            _path_phi(z, o, d, leaf_value[p], w, poly, quot, res)
            base = table_start[p] + mask * d
            for j in range(d):
                table[base + j] = res[j]


@numba.njit(parallel=True, cache=True)
def _shap_kernel(
    x: npt.NDArray[np.float64],
    tree_node_start: npt.NDArray[np.int64],
    tree_path_start: npt.NDArray[np.int64],
    node_feature: npt.NDArray[np.int64],
    is_cat: npt.NDArray[np.bool_],
    threshold: npt.NDArray[np.float64],
    default_left: npt.NDArray[np.bool_],
    missing_type: npt.NDArray[np.int8],
    cat_start: npt.NDArray[np.int64],
    cat_len: npt.NDArray[np.int64],
    cat_words: npt.NDArray[np.uint32],
    path_d: npt.NDArray[np.int64],
    path_feat_start: npt.NDArray[np.int64],
    path_feature: npt.NDArray[np.int64],
    path_z: npt.NDArray[np.float64],
    path_step_start: npt.NDArray[np.int64],
    step_node: npt.NDArray[np.int64],
    step_left: npt.NDArray[np.bool_],
    step_slot: npt.NDArray[np.int64],
    leaf_value: npt.NDArray[np.float64],
    table_start: npt.NDArray[np.int64],
    table: npt.NDArray[np.float64],
    max_nodes: int,
    max_d: int,
    block: int,
    out: npt.NDArray[np.float64],
) -> None:
    n, n_features = x.shape
    n_trees = tree_node_start.shape[0] - 1
    n_blocks = (n + block - 1) // block
    for b in numba.prange(n_blocks):
        r0 = b * block
        nb = min(n, r0 + block) - r0
        xt = np.empty((n_features, nb), np.float64)
        for r in range(nb):
            for f in range(n_features):
                xt[f, r] = x[r0 + r, f]
        phi = np.zeros((n_features, nb), np.float64)
        dec = np.empty((max(max_nodes, 1), nb), np.bool_)
        mask = np.empty(nb, np.int64)
        z_buf = np.empty(max(max_d, 1), np.float64)
        o_buf = np.empty(max(max_d, 1), np.float64)
        poly = np.empty(max_d + 1, np.float64)
        quot = np.empty(max(max_d, 1), np.float64)
        res = np.empty(max(max_d, 1), np.float64)
        for t in range(n_trees):
            n0 = tree_node_start[t]
            for k in range(n0, tree_node_start[t + 1]):
                f = node_feature[k]
                for r in range(nb):
                    dec[k - n0, r] = _go_left(
                        xt[f, r], k, is_cat, threshold, default_left, missing_type, cat_start, cat_len, cat_words
                    )
            for p in range(tree_path_start[t], tree_path_start[t + 1]):
                d = path_d[p]
                if d == 0:
                    continue
                full = (1 << d) - 1
                for r in range(nb):
                    mask[r] = full
                for s in range(path_step_start[p], path_step_start[p + 1]):
                    node = step_node[s] - n0
                    gl = step_left[s]
                    clear = ~(1 << step_slot[s])
                    for r in range(nb):
                        if dec[node, r] != gl:
                            mask[r] &= clear
                fs = path_feat_start[p]
                if table_start[p] >= 0:
                    ts = table_start[p]
                    for r in range(nb):
                        mask[r] = ts + mask[r] * d
                    for j in range(d):
                        row = phi[path_feature[fs + j]]
                        for r in range(nb):
                            row[r] += table[mask[r] + j]
                else:
                    w = _shapley_weights(d)
                    for j in range(d):
                        z_buf[j] = path_z[fs + j]
                    for r in range(nb):
                        for j in range(d):
                            o_buf[j] = 1.0 if (mask[r] >> j) & 1 else 0.0
                        _path_phi(z_buf, o_buf, d, leaf_value[p], w, poly, quot, res)
                        for j in range(d):
                            phi[path_feature[fs + j], r] += res[j]
        for r in range(nb):
            for f in range(n_features):
                out[r0 + r, f] = phi[f, r]


@numba.njit(parallel=True, cache=True)
def _bin_kernel(
    x: npt.NDArray[np.float64],
    cuts_start: npt.NDArray[np.int64],
    cuts: npt.NDArray[np.float64],
    feature_is_cat: npt.NDArray[np.bool_],
    out: npt.NDArray[np.int32],
) -> None:
    """Map every value to a code that determines all decisions of the model on that feature.

    Numerical: 0 = NaN, 1 = zero (|x| <= 1e-35), else 2 + number of thresholds strictly below x
    (``x <= thr`` is then the same for all x with the same code). Categorical: -1 for NaN or
    negative, else the truncated integer category (capped).
    """
    n, n_features = x.shape
    for r in numba.prange(n):
        for f in range(n_features):
            v = x[r, f]
            if feature_is_cat[f]:
                if math.isnan(v) or v <= -1.0:
                    out[r, f] = -1
                elif v >= 2147483647.0:
                    out[r, f] = 2147483647
                else:
                    out[r, f] = int(v)
                continue
            if math.isnan(v):
                out[r, f] = 0
                continue
            if -_ZERO_THRESHOLD <= v <= _ZERO_THRESHOLD:
                out[r, f] = 1
                continue
            lo = cuts_start[f]
            hi = cuts_start[f + 1]
            # number of cuts c with c < v  (binary search)
            a = lo
            bnd = hi
            while a < bnd:
                mid = (a + bnd) // 2
                if cuts[mid] < v:
                    a = mid + 1
                else:
                    bnd = mid
            out[r, f] = 2 + (a - lo)


# --------------------------------------------------------------------------------------------------
# model parsing
# --------------------------------------------------------------------------------------------------
@dataclass
class _Flat:
    tree_node_start: npt.NDArray[np.int64]
    tree_path_start: npt.NDArray[np.int64]
    node_feature: npt.NDArray[np.int64]
    is_cat: npt.NDArray[np.bool_]
    threshold: npt.NDArray[np.float64]
    default_left: npt.NDArray[np.bool_]
    missing_type: npt.NDArray[np.int8]
    cat_start: npt.NDArray[np.int64]
    cat_len: npt.NDArray[np.int64]
    cat_words: npt.NDArray[np.uint32]
    path_d: npt.NDArray[np.int64]
    path_feat_start: npt.NDArray[np.int64]
    path_feature: npt.NDArray[np.int64]
    path_z: npt.NDArray[np.float64]
    path_step_start: npt.NDArray[np.int64]
    step_node: npt.NDArray[np.int64]
    step_left: npt.NDArray[np.bool_]
    step_slot: npt.NDArray[np.int64]
    leaf_value: npt.NDArray[np.float64]
    expected_value: float
    max_nodes: int
    max_d: int
    max_depth: int


def _parse_model(dump: dict[str, Any]) -> _Flat:
    """Flatten ``Booster.dump_model()`` into node and path arrays."""
    tree_node_start = [0]
    tree_path_start = [0]
    node_feature: list[int] = []
    is_cat: list[bool] = []
    threshold: list[float] = []
    default_left: list[bool] = []
    missing_type: list[int] = []
    cat_start: list[int] = []
    cat_len: list[int] = []
    cat_words: list[int] = []
    path_d: list[int] = []
    path_feat_start: list[int] = []
    path_feature: list[int] = []
    path_z: list[float] = []
    path_step_start = [0]
    step_node: list[int] = []
    step_left: list[bool] = []
    step_slot: list[int] = []
    leaf_value: list[float] = []
    expected = 0.0
    max_nodes = 0
    max_d = 0
    max_depth = 0
    missing_codes = {"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}

    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        n0 = len(node_feature)
        if "leaf_value" in root and "split_feature" not in root:  # a single-leaf tree: only a constant
            expected += float(root["leaf_value"])
            tree_node_start.append(n0)
            tree_path_start.append(len(path_d))
            continue
        root_count = float(root["internal_count"])
        tree_expected = 0.0
        # depth-first walk; each stack entry: node, list of (global node id, went left, feature, ratio)
        stack: list[tuple[dict[str, Any], list[tuple[int, bool, int, float]]]] = [(root, [])]
        while stack:
            node, steps = stack.pop()
            if "split_feature" not in node:
                value = float(node["leaf_value"])
                tree_expected += value * float(node["leaf_count"]) / root_count
                slots: dict[int, int] = {}
                zs: list[float] = []
                feats: list[int] = []
                for gid, left, feat, ratio in steps:
                    slot = slots.get(feat)
                    if slot is None:
                        slot = len(feats)
                        slots[feat] = slot
                        feats.append(feat)
                        zs.append(ratio)
                    else:
                        zs[slot] *= ratio
                    step_node.append(gid)
                    step_left.append(left)
                    step_slot.append(slot)
                path_step_start.append(len(step_node))
                path_d.append(len(feats))
                path_feat_start.append(len(path_feature))
                path_feature.extend(feats)
                path_z.extend(zs)
                leaf_value.append(value)
                max_d = max(max_d, len(feats))
                max_depth = max(max_depth, len(steps))
                continue
            gid = len(node_feature)
            feat = int(node["split_feature"])
            node_feature.append(feat)
            default_left.append(bool(node.get("default_left", False)))
            missing_type.append(missing_codes[str(node.get("missing_type", "None"))])
            if node["decision_type"] == "==":
                cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
                n_words = (max(cats) >> 5) + 1 if cats else 0
                words = [0] * n_words
                for c in cats:
                    if c >= 0:
                        words[c >> 5] |= 1 << (c & 31)
                is_cat.append(True)
                threshold.append(0.0)
                cat_start.append(len(cat_words))
                cat_len.append(n_words)
                cat_words.extend(words)
            elif node["decision_type"] == "<=":
                is_cat.append(False)
                threshold.append(float(node["threshold"]))
                cat_start.append(0)
                cat_len.append(0)
            else:  # pragma: no cover - LightGBM 4 has only these two
                msg = f"Unsupported LightGBM decision_type {node['decision_type']!r} in tree {tree['tree_index']}."
                raise ValueError(msg)
            count = float(node["internal_count"])
            left, right = node["left_child"], node["right_child"]
            left_ratio = _count(left) / count
            right_ratio = _count(right) / count
            # push right first so that paths are emitted left to right
            stack.append((right, [*steps, (gid, False, feat, right_ratio)]))
            stack.append((left, [*steps, (gid, True, feat, left_ratio)]))
        expected += tree_expected
        max_nodes = max(max_nodes, len(node_feature) - n0)
        tree_node_start.append(len(node_feature))
        tree_path_start.append(len(path_d))

    def i64(a: list[int]) -> npt.NDArray[np.int64]:
        return np.asarray(a, dtype=np.int64)

    return _Flat(
        tree_node_start=i64(tree_node_start),
        tree_path_start=i64(tree_path_start),
        node_feature=i64(node_feature),
        is_cat=np.asarray(is_cat, dtype=np.bool_),
        threshold=np.asarray(threshold, dtype=np.float64),
        default_left=np.asarray(default_left, dtype=np.bool_),
        missing_type=np.asarray(missing_type, dtype=np.int8),
        cat_start=i64(cat_start),
        cat_len=i64(cat_len),
        cat_words=np.asarray(cat_words, dtype=np.uint32),
        path_d=i64(path_d),
        path_feat_start=i64(path_feat_start),
        path_feature=i64(path_feature),
        path_z=np.asarray(path_z, dtype=np.float64),
        path_step_start=i64(path_step_start),
        step_node=i64(step_node),
        step_left=np.asarray(step_left, dtype=np.bool_),
        step_slot=i64(step_slot),
        leaf_value=np.asarray(leaf_value, dtype=np.float64),
        expected_value=expected,
        max_nodes=max_nodes,
        max_d=max_d,
        max_depth=max_depth,
    )


def _count(node: dict[str, Any]) -> float:
    return float(node["internal_count"] if "split_feature" in node else node["leaf_count"])


def _dump_goes_left(node: dict[str, Any], x: float) -> bool:
    """LightGBM's decision at a dumped split node for value ``x`` (the rule of :func:`_go_left`)."""
    if node["decision_type"] == "==":
        if math.isnan(x) or x <= -1.0 or x >= 2147483647.0:
            return False
        cats = {int(c) for c in str(node["threshold"]).split("||") if c != ""}
        return int(x) in cats
    missing = str(node.get("missing_type", "None"))
    if math.isnan(x):
        if missing == "NaN":
            return bool(node.get("default_left", False))
        x = 0.0
    if -_ZERO_THRESHOLD <= x <= _ZERO_THRESHOLD:
        if missing == "Zero":
            return bool(node.get("default_left", False))
        x = 0.0
    return x <= float(node["threshold"])


def _scaled(node: dict[str, Any], factor: float) -> dict[str, Any]:
    """A copy of a subtree with every count multiplied by ``factor`` (cover ratios inside are unchanged)."""
    out = dict(node)
    if "split_feature" in node:
        out["internal_count"] = float(node["internal_count"]) * factor
        out["left_child"] = _scaled(node["left_child"], factor)
        out["right_child"] = _scaled(node["right_child"], factor)
    else:
        out["leaf_count"] = float(node.get("leaf_count", 0.0)) * factor
    return out


def _condition(node: dict[str, Any], fixed: dict[int, float]) -> dict[str, Any]:
    """The subtree as a function of the other features when the features in ``fixed`` hold those values.

    A split on a fixed feature is replaced by the child the fixed value takes, with that child's counts
    scaled to the split node's count: the cover ratios above it still sum to one, so the tree's expected
    value is the covers-weighted mean over the training rows *given the fixed values' branches*.
    """
    while "split_feature" in node and int(node["split_feature"]) in fixed:
        child = node["left_child"] if _dump_goes_left(node, fixed[int(node["split_feature"])]) else node["right_child"]
        below = _count(child)
        node = _scaled(child, _count(node) / below if below > 0 else 1.0)
    if "split_feature" not in node:
        return node
    out = dict(node)
    out["left_child"] = _condition(node["left_child"], fixed)
    out["right_child"] = _condition(node["right_child"], fixed)
    return out


def condition_dump(dump: dict[str, Any], fixed: dict[int, float]) -> dict[str, Any]:
    """``Booster.dump_model()`` of the model restricted to rows whose features ``fixed`` (index -> value) hold.

    Every tree predicts exactly as the original for such rows, and no split on a fixed feature is left,
    so TreeSHAP of the conditioned model gives those features no attribution.
    """
    trees = [{**t, "tree_structure": _condition(t["tree_structure"], fixed)} for t in dump["tree_info"]]
    return {**dump, "tree_info": trees}


def _model_booster(model: Any) -> Any:
    """The lightgbm.Booster behind a Booster, an LGBMModel or an object with ``booster_``."""
    import lightgbm as lgb

    if isinstance(model, lgb.Booster):
        return model
    booster = getattr(model, "booster_", None)
    if isinstance(booster, lgb.Booster):
        return booster
    msg = (
        f"Cannot explain a {type(model).__name__}: expected a lightgbm.Booster, an LGBMClassifier/LGBMRegressor "
        "or a model with a fitted `booster_` attribute (e.g. omni_ml's PropensityModel). "
        "Hint: fit the model before explaining it."
    )
    raise TypeError(msg)


class TreeShap:
    """Fast exact TreeSHAP (path-dependent) for a single-output LightGBM model.

    Agrees with ``booster.predict(X, pred_contrib=True)`` and ``shap.TreeExplainer(model)`` to floating
    point rounding; SHAP values are in raw-score units (log-odds for a binary model). See the module
    docstring for the algorithm.

    Parameters
    ----------
    model : lightgbm.Booster, LGBMModel, or object with a ``booster_`` attribute
        A fitted single-output model (binary, regression, ...). Multiclass and ``linear_tree`` models
        are not supported.
    max_table_depth : int, default 16
        Paths with at most this many distinct features get a precomputed table of ``2**d`` rows;
        longer paths are computed per row (exact either way, slower). Tables are built on the first
        call and grown for larger batches: a batch of ``n`` rows tables paths up to
        ``min(max_table_depth, floor(log2 n) + 1)`` features (at least 4), so explaining a handful of
        rows stays cheap.
    max_table_bytes : int, default 512 MiB
        Memory budget of the tables; the depth threshold is lowered until the tables fit.
    fixed : dict of str to float, optional
        Features held at one value (e.g. the calendar features of a scoring moment, the same for every
        customer scored then). The model is conditioned on them (:func:`condition_dump`): for rows with
        those values the raw score is unchanged, the fixed features get exactly zero attribution and
        ``expected_value`` becomes the covers-weighted mean score of the training rows given the fixed
        values' branches. Rows with other values of a fixed feature are explained as if they had these.

    Attributes
    ----------
    expected_value : float
        The base value: the covers-weighted mean raw score (given ``fixed``). ``shap_values(X).sum(1) + expected_value``
        equals the raw score.
    feature_names : list of str
        The model's feature names, in column order.
    max_depth : int
        The depth of the deepest leaf of the model.
    table_depth : int
        Paths with up to this many features currently have tables (-1 before the first call).

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    >>> booster = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1}, lgb.Dataset(X, y), 10)
    >>> ts = TreeShap(booster)
    >>> phi = ts.shap_values(X[:5])
    >>> phi.shape
    (5, 3)
    >>> bool(np.allclose(phi.sum(axis=1) + ts.expected_value, booster.predict(X[:5], raw_score=True)))
    True
    """

    def __init__(
        self,
        model: Any,
        *,
        max_table_depth: int = 16,
        max_table_bytes: int = 512 * 2**20,
        fixed: dict[str, float] | None = None,
    ) -> None:
        booster = _model_booster(model)
        dump = booster.dump_model()
        if int(dump.get("num_tree_per_iteration", 1)) != 1:
            msg = (
                f"TreeShap explains single-output models; this model has {dump['num_tree_per_iteration']} trees per "
                "iteration (multiclass). Hint: use booster.predict(X, pred_contrib=True) for multiclass models."
            )
            raise ValueError(msg)
        if bool(dump.get("average_output", False)):
            msg = "TreeShap does not support random-forest LightGBM models (average_output). Hint: use pred_contrib."
            raise ValueError(msg)
        if any(_has_linear(t["tree_structure"]) for t in dump["tree_info"]):
            msg = "TreeShap does not support linear_tree models. Hint: use booster.predict(X, pred_contrib=True)."
            raise ValueError(msg)
        self.booster = booster
        self.feature_names: list[str] = list(dump["feature_names"])
        self.fixed: dict[str, float] = dict(fixed or {})
        unknown = [n for n in self.fixed if n not in self.feature_names]
        if unknown:
            msg = f"TreeShap(fixed=...): {unknown[:5]} are not features of this model."
            raise ValueError(msg)
        if self.fixed:
            index = {n: i for i, n in enumerate(self.feature_names)}
            dump = condition_dump(dump, {index[n]: float(v) for n, v in self.fixed.items()})
        self._flat = _parse_model(dump)
        self.expected_value: float = float(self._flat.expected_value)
        self.max_depth: int = self._flat.max_depth
        self._max_table_depth = int(max_table_depth)
        self._max_table_bytes = int(max_table_bytes)
        self.table_depth: int = -1  # tables are built lazily, sized to the batch (see _kernel)
        self._table_start = np.full(self._flat.path_d.size, -1, dtype=np.int64)
        self._table = np.empty(0, dtype=np.float64)
        self._build_cuts()

    @property
    def n_features(self) -> int:
        """Number of model features (columns expected by :meth:`shap_values`)."""
        return len(self.feature_names)

    def _build_tables(self, max_table_depth: int, max_table_bytes: int) -> None:
        d = self._flat.path_d
        cap = int(max_table_depth)
        while cap > 0:
            sizes = np.where(d <= cap, (np.left_shift(1, np.minimum(d, cap)) * d).astype(np.int64), 0)
            if int(sizes.sum()) * 8 <= max_table_bytes:
                break
            cap -= 1
        sizes = np.where((d <= cap) & (d > 0), np.left_shift(1, np.minimum(d, 62)) * d, 0).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._table_start = np.where((d <= cap) & (d > 0), starts, -1).astype(np.int64)
        self._table = np.empty(int(sizes.sum()), dtype=np.float64)
        self.table_depth = cap
        f = self._flat
        if f.path_d.size:
            _fill_tables(f.path_d, f.path_feat_start, f.path_z, f.leaf_value, self._table_start, self._table)

    def _build_cuts(self) -> None:
        f = self._flat
        n = self.n_features
        num = ~f.is_cat
        cuts_per: list[npt.NDArray[np.float64]] = []
        for j in range(n):
            sel = num & (f.node_feature == j)
            cuts_per.append(np.unique(f.threshold[sel]))
        self._cuts_start = np.concatenate([[0], np.cumsum([c.size for c in cuts_per])]).astype(np.int64)
        self._cuts = np.concatenate(cuts_per) if cuts_per else np.empty(0, np.float64)
        self._feature_is_cat = np.zeros(n, dtype=np.bool_)
        self._feature_is_cat[np.unique(f.node_feature[f.is_cat])] = True

    def shap_values(self, X: Any, *, dedupe: bool = True) -> npt.NDArray[np.float64]:
        """SHAP values of the raw score for every row of ``X``.

        Parameters
        ----------
        X : numpy array, polars or pandas DataFrame
            Feature rows. A DataFrame is matched to the model's features by column name (extra columns,
            e.g. ``customer_id``, are ignored); an array must have the model's columns in order.
        dedupe : bool, default True
            Explain each distinct decision pattern once (exact; see the module docstring).

        Returns
        -------
        numpy.ndarray of shape (n_rows, n_features)
            Contributions in raw-score units; each row sums to ``raw_score - expected_value``.
        """
        x = as_feature_matrix(X, self.feature_names)
        if x.shape[0] == 0:
            return np.zeros((0, self.n_features), dtype=np.float64)
        if dedupe and x.shape[0] > 1:
            groups = _distinct_rows(self.decision_bins(x))
            if groups is not None and groups[0].size < 0.9 * x.shape[0]:
                first, inverse = groups
                return self._kernel(np.ascontiguousarray(x[first]))[inverse]
        return self._kernel(x)

    def decision_bins(self, X: Any) -> npt.NDArray[np.int32]:
        """Integer codes per value that determine every decision of the model (see module docstring)."""
        x = as_feature_matrix(X, self.feature_names)
        out = np.empty(x.shape, dtype=np.int32)
        _bin_kernel(x, self._cuts_start, self._cuts, self._feature_is_cat, out)
        return out

    def _kernel(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # A path's table costs about 2**d per-row evaluations of that path to fill, so it pays off for
        # batches of about 2**(d-1) rows or more: size the tables to the largest batch seen so far.
        wanted = min(self._max_table_depth, max(4, int(math.log2(max(x.shape[0], 2))) + 1))
        if wanted > self.table_depth:
            self._build_tables(wanted, self._max_table_bytes)
        f = self._flat
        out = np.zeros((x.shape[0], self.n_features), dtype=np.float64)
        _shap_kernel(
            x,
            f.tree_node_start,
            f.tree_path_start,
            f.node_feature,
            f.is_cat,
            f.threshold,
            f.default_left,
            f.missing_type,
            f.cat_start,
            f.cat_len,
            f.cat_words,
            f.path_d,
            f.path_feat_start,
            f.path_feature,
            f.path_z,
            f.path_step_start,
            f.step_node,
            f.step_left,
            f.step_slot,
            f.leaf_value,
            self._table_start,
            self._table,
            f.max_nodes,
            f.max_d,
            _block_size(x.shape[0]),
            out,
        )
        return out


def _distinct_rows(codes: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """Index of one row per distinct code row and, per row, its group; None on a hash collision.

    Rows are grouped by a 64-bit hash (a fixed random odd multiplier per column, summed modulo 2**64:
    vectorised, 1-D), then every row is compared with its group's representative, so a collision can
    never merge different rows: it only disables the shortcut.
    """
    multipliers = np.random.default_rng(0x5EED).integers(1, 2**63, size=codes.shape[1], dtype=np.uint64) | np.uint64(1)
    hashes = (codes.astype(np.int64).view(np.uint64) * multipliers).sum(axis=1, dtype=np.uint64)
    hashes ^= hashes >> np.uint64(29)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    if not np.array_equal(codes, codes[first[inverse]]):
        return None
    return first.astype(np.int64), inverse


def _block_size(n_rows: int) -> int:
    threads = max(1, numba.get_num_threads())
    return int(min(_BLOCK, max(64, -(-n_rows // threads))))


def _has_linear(node: dict[str, Any]) -> bool:
    stack = [node]
    while stack:
        n = stack.pop()
        if "leaf_coeff" in n or "leaf_features" in n:
            return True
        if "left_child" in n:
            stack.append(n["left_child"])
            stack.append(n["right_child"])
    return False


def as_feature_matrix(X: Any, feature_names: list[str]) -> npt.NDArray[np.float64]:
    """Convert ``X`` to a C-contiguous float64 matrix with the model's columns in order.

    Raises
    ------
    omni_ml.exceptions.SchemaError
        When columns are missing, non-numeric, or the width does not match.
    """
    from omni_ml.explanation._frames import feature_matrix

    return feature_matrix(X, feature_names)
