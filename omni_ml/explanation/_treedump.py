"""LightGBM model dumps for the exact TreeSHAP: flat arrays of nodes and paths, and conditioned dumps.

:func:`_parse_model` turns ``Booster.dump_model()`` into the arrays the numba kernels of
:mod:`omni_ml.explanation._treeshap` walk (nodes, root-to-leaf paths with their merged path features
and zero fractions, leaf values); :func:`condition_dump` restricts a dump to the rows whose given
features hold given values. The decision rule at a node is LightGBM's (see the kernels' docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# LightGBM's kZeroThreshold is the float 1e-35f; values with |x| <= it are read as 0.
_ZERO_THRESHOLD = float(np.float32(1e-35))
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2


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


_MISSING_CODES = {"None": _MISSING_NONE, "Zero": _MISSING_ZERO, "NaN": _MISSING_NAN}


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
                feats, zs, slots = _unique_path_features(steps)
                step_node.extend(gid for gid, _, _, _ in steps)
                step_left.extend(left for _, left, _, _ in steps)
                step_slot.extend(slots)
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
            missing_type.append(_MISSING_CODES[str(node.get("missing_type", "None"))])
            categorical, cut, words = _split_rule(node, tree)
            is_cat.append(categorical)
            threshold.append(cut)
            cat_start.append(len(cat_words) if categorical else 0)
            cat_len.append(len(words))
            cat_words.extend(words)
            stack.extend(_children(node, steps, gid, feat))
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


def _unique_path_features(steps: list[tuple[int, bool, int, float]]) -> tuple[list[int], list[float], list[int]]:
    """The distinct features on a root-to-leaf path, the product of their cover ratios, each step's feature slot."""
    slots: dict[int, int] = {}
    zs: list[float] = []
    feats: list[int] = []
    step_slots: list[int] = []
    for _gid, _left, feat, ratio in steps:
        slot = slots.get(feat)
        if slot is None:
            slot = len(feats)
            slots[feat] = slot
            feats.append(feat)
            zs.append(ratio)
        else:
            zs[slot] *= ratio
        step_slots.append(slot)
    return feats, zs, step_slots


def _split_rule(node: dict[str, Any], tree: dict[str, Any]) -> tuple[bool, float, list[int]]:
    """A dumped split's rule: categorical (with the categories' 32-bit bitset words) or ``<=`` a threshold."""
    if node["decision_type"] == "==":
        cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
        n_words = (max(cats) >> 5) + 1 if cats else 0
        words = [0] * n_words
        for c in cats:
            if c >= 0:
                words[c >> 5] |= 1 << (c & 31)
        return True, 0.0, words
    if node["decision_type"] == "<=":
        return False, float(node["threshold"]), []
    # pragma: no cover - LightGBM 4 has only these two
    msg = f"Unsupported LightGBM decision_type {node['decision_type']!r} in tree {tree['tree_index']}."
    raise ValueError(msg)


def _children(
    node: dict[str, Any], steps: list[tuple[int, bool, int, float]], gid: int, feat: int
) -> list[tuple[dict[str, Any], list[tuple[int, bool, int, float]]]]:
    """A split's two children with their paths (step: node, went left, feature, cover ratio); right first.

    Pushed on the walk's stack in this order, the paths are emitted left to right.
    """
    count = float(node["internal_count"])
    left, right = node["left_child"], node["right_child"]
    return [
        (right, [*steps, (gid, False, feat, _count(right) / count)]),
        (left, [*steps, (gid, True, feat, _count(left) / count)]),
    ]


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
