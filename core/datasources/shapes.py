"""Per-shape plans: the fast path of denaturalize, and DICOM JSON bytes written without its dicts.

The instances of a series carry the same keys with the same value classes, so the per-element
decisions of :func:`datasources.naturalize.denaturalize` (tag, VR, a value or a list, sorted
order) are the same for each of them. A plan makes those decisions once per shape (the keys,
the class of each value and the ``_vrMap``, all checked before it is used); applying it leaves
only the elements that need more than wrapping (lists, references, sequences, ambiguous VRs)
to the element-by-element code. :func:`dicom_json_planned` goes one step further for the
gateway: each value is written by ``orjson`` between pieces of JSON the plan holds, so the
answer's DICOM JSON dicts are never built nor freed. Anything a plan was not made for returns
``None`` and the caller takes the element-by-element path, which stays the reference (the same
results, the same errors). Plans are bounded like the other caches.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson

from . import naturalize as _nat  # attributes read at call time: naturalize imports this module

__all__ = ["denaturalize_planned", "dicom_json_planned", "plan_counts"]

_PLAN_LIMIT = 1024  # shapes remembered per direction; past it the plans are dropped and rebuilt


# slow-position kinds of a denaturalize plan
_NONE, _COPY, _ELEMENT, _AMBIGUOUS = range(4)

_DEN_PLANS: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def plan_counts() -> dict[str, int]:
    """How many shapes each direction holds a plan for (each at most ``_PLAN_LIMIT``)."""
    return {"denaturalize": len(_DEN_PLANS)}


def _remember(plans: dict[tuple[Any, ...], tuple[Any, ...]], key: tuple[Any, ...], plan: tuple[Any, ...]) -> None:
    if len(plans) >= _PLAN_LIMIT:
        plans.clear()
    plans[key] = plan


# -- naturalized -> DICOM JSON ------------------------------------------------------------

_SCALARS = (str, int, float)


def _denaturalize_plan(
    keys: tuple[Any, ...], classes: tuple[type, ...], vr_map: dict[str, str] | None, skip_unknown: bool
) -> tuple[Any, ...] | None:
    """The decisions of ``naturalize._denaturalize`` for this shape, or None where it would do more."""
    cache = _nat._KEY_CACHE
    kept: list[tuple[str, str | None, int, str, str | None, type]] = []  # (tag, vr, index, key, dict_vr, class)
    for index, (key, cls) in enumerate(zip(keys, classes, strict=True)):
        if key.__class__ is not str:
            return None
        entry = cache.get(key, False)
        if entry is False:
            entry = _nat._key_entry(key)
            if entry is False:
                if not skip_unknown:
                    return None  # the reference path names the unknown keys
                continue
        if entry is None:
            continue
        tag, dict_vr = entry
        if vr_map and key in vr_map:
            vr: str | None = vr_map[key]
        elif dict_vr is not None and " or " not in dict_vr:
            vr = dict_vr
        else:
            vr = None  # chosen from the value each time
        kept.append((tag, vr, index, key, dict_vr, cls))
    tags = [k[0] for k in kept]
    if len(set(tags)) != len(tags):
        return None  # a keyword and its tag both given: the reference path decides
    kept.sort()
    slow: list[tuple[int, int, int, str, str | None]] = []  # (original index, kind, sorted position, key, vr)
    for position, (_tag, vr, index, key, dict_vr, cls) in enumerate(kept):
        if vr is None:
            slow.append((index, _AMBIGUOUS, position, key, dict_vr))
        elif cls is type(None):
            slow.append((index, _NONE, position, key, vr))
        elif (cls in _SCALARS and vr != "PN") or (cls is dict and vr == "PN"):
            continue  # {"vr": vr, "Value": [value]}, made for every position at once
        elif cls is list and vr != "SQ" and vr != "PN":
            slow.append((index, _COPY, position, key, vr))
        else:
            slow.append((index, _ELEMENT, position, key, vr))
    slow.sort()  # in the dataset's order, so that the first bad element is the one named, as element by element
    kinds = {position: kind for _, kind, position, _, _ in slow}
    heads, tails = [], []
    for position, (tag, vr, *_rest) in enumerate(kept):  # the JSON around each value, for dicom_json_planned
        comma = b"," if position else b"{"
        kind = kinds.get(position)
        if kind is None:
            heads.append(b'%s"%s":{"vr":%s,"Value":[' % (comma, tag.encode(), orjson.dumps(vr)))
            tails.append(b"]}")
        elif kind == _COPY:
            heads.append(b'%s"%s":{"vr":%s,"Value":' % (comma, tag.encode(), orjson.dumps(vr)))
            tails.append(b"}")
        elif kind == _NONE:
            heads.append(b'%s"%s":{"vr":%s}' % (comma, tag.encode(), orjson.dumps(vr)))
            tails.append(b"")
        else:
            heads.append(b'%s"%s":' % (comma, tag.encode()))
            tails.append(b"")
    # one bytes template for the dataset: ``template % pieces`` writes it in one C call
    template = b"".join(
        h.replace(b"%", b"%%") + b"%b" + t.replace(b"%", b"%%") for h, t in zip(heads, tails, strict=True)
    )
    template = template + b"}" if heads else b"{}"
    order = tuple(k[2] for k in kept)
    gather = itemgetter(*order) if len(order) > 1 else (lambda values: tuple(values[i] for i in order))
    return (
        None if not vr_map else dict(vr_map),
        tuple(k[0] for k in kept),
        tuple(k[1] for k in kept),
        gather,
        tuple(slow),
        template,
    )


def _den_plan(dataset: Any, skip_unknown: bool) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """The plan for a naturalized dataset and its values, or None when it takes the element-by-element path."""
    if dataset.__class__ is not dict:
        return None
    vr_map = dataset.get(_nat.VR_MAP_KEY)
    if vr_map is not None:
        if vr_map.__class__ is not dict or not all(v.__class__ is str for v in vr_map.values()):
            return None
        if not vr_map:
            vr_map = None
    values = tuple(dataset.values())
    shape = (skip_unknown, tuple(dataset), tuple(map(type, values)))
    plan = _DEN_PLANS.get(shape)
    if plan is None or plan[0] != vr_map:
        plan = _denaturalize_plan(shape[1], shape[2], vr_map, skip_unknown)
        if plan is None:
            return None
        _remember(_DEN_PLANS, shape, plan)
    return plan, values


def denaturalize_planned(dataset: Any, skip_unknown: bool, path: str, depth: int) -> dict[str, Any] | None:
    """``naturalize._denaturalize(dataset, ...)`` through a plan; None when no plan fits (nothing done)."""
    found = _den_plan(dataset, skip_unknown)
    if found is None:
        return None
    (_, tags, vrs, gather, slow, _), values = found
    gathered = gather(values)
    out = {tag: {"vr": vr, "Value": [value]} for tag, vr, value in zip(tags, vrs, gathered, strict=True)}
    for _, kind, position, key, vr in slow:
        out[tags[position]] = _slow_element(kind, key, gathered[position], vr, skip_unknown, path, depth)
    return out


def _slow_element(kind: int, key: str, value: Any, vr: Any, skip_unknown: bool, path: str, depth: int) -> Any:
    if kind == _COPY:
        return {"vr": vr, "Value": list(value)}
    if kind == _NONE:
        return {"vr": vr}
    if kind == _ELEMENT:
        return _nat._element(key, value, vr, skip_unknown, path, depth)
    chosen = _nat._resolve_vr(key, None, vr, value)
    cls = value.__class__
    if value is None:
        return {"vr": chosen}
    if cls in _SCALARS and chosen != "PN":
        return {"vr": chosen, "Value": [value]}
    if cls is list and chosen != "SQ" and chosen != "PN":
        return {"vr": chosen, "Value": list(value)}
    return _nat._element(key, value, chosen, skip_unknown, path, depth)


def dicom_json_planned(dataset: Any, rewrite: Callable[[str, dict[str, Any]], None] | None = None) -> bytes | None:
    """``orjson.dumps(denaturalize(dataset, skip_unknown=True))`` made from the plan's pieces of JSON,
    without building the DICOM JSON dicts; ``rewrite(tag, element)`` is applied first to each element
    that is more than a value (references, sequences). None when no plan fits."""
    found = _den_plan(dataset, True)
    if found is None:
        return None
    (_, tags, _, gather, slow, template), values = found
    if not tags:
        return b"{}"
    gathered = gather(values)
    try:
        pieces = list(map(orjson.dumps, gathered))
    except orjson.JSONEncodeError:
        return None  # bytes, say: the element-by-element path makes InlineBinary of them, or names the value

    for _, kind, position, key, vr in slow:
        if kind == _COPY:
            continue  # the list itself, written as it is
        if kind == _NONE:
            pieces[position] = b""
            continue
        value = gathered[position]
        if kind == _ELEMENT and value.__class__ is dict and "BulkDataURI" in value and vr != "PN":
            element = {"vr": vr, "BulkDataURI": value["BulkDataURI"]}  # what _element makes of a reference
        else:
            element = _slow_element(kind, key, value, vr, True, "", 0)
        if rewrite is not None:
            rewrite(tags[position], element)
        pieces[position] = orjson.dumps(element)
    return template % tuple(pieces)
