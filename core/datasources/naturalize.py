"""DICOM JSON <-> naturalized datasets (keyword-keyed dicts), as OHIF/dcmjs naturalize them.

This is the hot path of every metadata retrieve, so the tag tables are built once from
pydicom's data dictionary and the per-element work is a dict look-up and an assignment: no
pydicom objects, no per-element allocation beyond the output value.

Rules (the value contract, docs/contracts.md): keywords for known tags; private and unknown tags
keep their 8-hex tag; an attribute whose dictionary VM is 1 is a scalar, one that may hold
several values (VM ``1-n``, ``2``, ``3``...) is always a list, even of one (so
``ModalitiesInStudy`` is ``["CT"]`` from every source); a tag the dictionary does not know
unwraps one value; no ``Value`` gives ``None``; PN stays ``{"Alphabetic": ...}``;
sequences are always lists of naturalized datasets; ``BulkDataURI``/``InlineBinary`` stay as
references; the VR of any element whose VR is not the dictionary's single VR is kept in
``_vrMap`` so that :func:`denaturalize` gives back exactly what came in.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import shapes as _shapes  # its functions are looked up at call time: it imports this module
from .errors import DatasetError, MalformedResponseError
from .gcpause import paused_gc
from .multiplicity import _MULTI, _SPECIAL, _multi_keys, _number, is_multi_valued

if TYPE_CHECKING:
    from pydicom import Dataset
    from pydicom.dataelem import DataElement

__all__ = [
    "VR_MAP_KEY",
    "is_multi_valued",
    "denaturalize",
    "from_pydicom",
    "cache_sizes",
    "is_tag",
    "keyword_for_tag",
    "naturalize",
    "naturalize_many",
    "paused_gc",
    "tag_for_keyword",
    "to_pydicom",
    "vr_for_keyword",
    "vr_for_tag",
]

VR_MAP_KEY = "_vrMap"

# "00100010" -> ("PatientName", "PN"); unknown tags map to (tag, None) once seen
_BY_TAG: dict[str, tuple[str, str | None]] = {}
# "PatientName" -> ("00100010", "PN")
_BY_KEYWORD: dict[str, tuple[str, str]] = {}
_tables_lock = threading.Lock()
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
# Caches of what the dictionary does not hold (private tags, lower-case hex, application keys)
# are bounded: a backend that sends new private tags in every dataset must not grow the process.
# Past the bound a cache is emptied and refilled; what recurs is back in it at once.
CACHE_LIMIT = 4096
# sequences nested deeper than this are refused (real data nests a few levels; Python's stack does not)
MAX_DEPTH = 64


def _build_tables() -> None:
    with _tables_lock:
        if _BY_KEYWORD:
            return
        from pydicom.datadict import DicomDictionary

        by_tag: dict[str, tuple[str, str | None]] = {}
        by_keyword: dict[str, tuple[str, str]] = {}
        for tag, entry in DicomDictionary.items():
            vr, keyword = entry[0], entry[4]
            if not keyword:
                continue
            hex_tag = f"{tag:08X}"
            by_tag[hex_tag] = (keyword, vr)
            by_keyword[keyword] = (hex_tag, vr)
        _BY_TAG.update(by_tag)
        _BY_KEYWORD.update(by_keyword)


def _tag_table() -> dict[str, tuple[str, str | None]]:
    if not _BY_KEYWORD:
        _build_tables()
    return _BY_TAG


def _keyword_table() -> dict[str, tuple[str, str]]:
    if not _BY_KEYWORD:
        _build_tables()
    return _BY_KEYWORD


def _normalize_tag(tag: str | int) -> str | None:
    if isinstance(tag, int):
        return f"{tag:08X}" if 0 <= tag <= 0xFFFFFFFF else None
    text = tag.strip().strip("()").replace(",", "").replace(" ", "")
    if text.lower().startswith("0x"):
        text = text[2:]
    return text.upper() if _HEX_TAG.match(text) else None


def is_tag(text: str) -> bool:
    """True for an 8-hex tag such as ``"00100010"``."""
    return bool(_HEX_TAG.match(text))


def cache_sizes() -> dict[str, int]:
    """How many entries each process-wide cache holds (each is at most :data:`CACHE_LIMIT`)."""
    return {"tags": len(_MISSES), "keys": len(_KEY_CACHE)}


def keyword_for_tag(tag: str | int) -> str | None:
    """``"00100010"``, ``"(0010,0010)"`` or ``0x00100010`` -> ``"PatientName"``; None if unknown."""
    hex_tag = _normalize_tag(tag)
    if hex_tag is None:
        return None
    entry = _tag_table().get(hex_tag)
    return entry[0] if entry and entry[1] is not None else None


def tag_for_keyword(keyword: str) -> str | None:
    """``"PatientName"`` -> ``"00100010"``; None if the keyword is not in the dictionary."""
    entry = _keyword_table().get(keyword)
    return entry[0] if entry else None


def vr_for_keyword(keyword: str) -> str | None:
    """The dictionary VR of a keyword (``"PN"``; ``"US or SS"`` for ambiguous ones)."""
    entry = _keyword_table().get(keyword)
    return entry[1] if entry else None


def vr_for_tag(tag: str | int) -> str | None:
    hex_tag = _normalize_tag(tag)
    entry = _tag_table().get(hex_tag) if hex_tag else None
    return entry[1] if entry else None


# -- DICOM JSON -> naturalized -------------------------------------------------------------


def _naturalize(
    dataset: Mapping[str, Any],
    table: dict[str, tuple[str, str | None]],
    depth: int = 0,
    refs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    multi = _MULTI or _multi_keys()
    special = _SPECIAL
    out: dict[str, Any] = {}
    vr_map: dict[str, str] | None = None
    for tag, element in dataset.items():
        entry = table.get(tag)
        if entry is None:
            entry = _miss(tag, table)
        key, dict_vr = entry
        vr = element.get("vr")
        if vr != dict_vr and vr is not None:
            if not isinstance(vr, str):
                raise MalformedResponseError(f"not a DICOM JSON dataset: the vr of {tag} is {vr!r}"[:300])
            if vr_map is None:
                vr_map = {}
            vr_map[key] = vr
        value = element.get("Value")
        if value is None:
            if "BulkDataURI" in element:
                ref = out[key] = {"BulkDataURI": element["BulkDataURI"]}
                if refs is not None:
                    refs.append(ref)
            elif "InlineBinary" in element:
                out[key] = {"InlineBinary": element["InlineBinary"]}
            else:
                out[key] = None
        elif value.__class__ is not list:
            raise MalformedResponseError(
                f"not a DICOM JSON dataset: the Value of {tag} is a {type(value).__name__}, not a list"
            )
        elif vr == "SQ":
            if depth >= MAX_DEPTH:
                raise MalformedResponseError(f"DICOM JSON sequences nested deeper than {MAX_DEPTH} levels (at {tag})")
            out[key] = [_naturalize(item, table, depth + 1, refs) if item else {} for item in value]
        elif len(value) == 1 and key not in special:  # the common case: one value, nothing to convert
            out[key] = value[0]
        elif len(value) == 1:
            v = value[0]
            if vr == "DS":
                if v.__class__ is not float:
                    v = _number(v, vr)
            elif vr == "IS" and v.__class__ is not int:
                v = _number(v, vr)
            out[key] = [v] if key in multi else v
        elif not value:
            out[key] = None
        elif vr == "DS" or vr == "IS":
            kind = float if vr == "DS" else int
            out[key] = [v if v.__class__ is kind else _number(v, vr) for v in value]
        else:
            out[key] = value
    if vr_map is not None:
        out[VR_MAP_KEY] = vr_map
    return out


# tags the dictionary does not hold as they are written (private, unknown, lower-case hex)
_MISSES: dict[str, tuple[str, str | None]] = {}


def _miss(tag: str, table: dict[str, tuple[str, str | None]]) -> tuple[str, str | None]:
    """A tag not in the table: lower-case hex, a private or unknown tag, or not a tag at all."""
    entry = _MISSES.get(tag) if tag.__class__ is str else None
    if entry is not None:
        return entry
    if not isinstance(tag, str) or not _HEX_TAG.match(tag):
        raise MalformedResponseError(f"not a DICOM JSON dataset: key {tag!r} is not an 8-hex tag"[:300])
    upper = tag.upper()
    entry = table.get(upper)
    if entry is None:
        entry = (upper, None)
    if len(_MISSES) >= CACHE_LIMIT:
        _MISSES.clear()
    _MISSES[tag] = entry  # remembered: private tags recur in every instance
    return entry


def naturalize(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """One DICOM JSON dataset -> a naturalized dict."""
    return naturalize_many((dataset,))[0]


def naturalize_many(
    datasets: Iterable[Mapping[str, Any]], *, bulk_refs: list[list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """Many DICOM JSON datasets (a WADO-RS metadata answer) -> naturalized dicts.

    With ``bulk_refs``, one list per dataset is appended to it: the ``{"BulkDataURI": ...}``
    dicts made for that dataset, sequences included, so that a caller rewriting the URIs
    touches those and does not walk every element again.
    """
    table = _tag_table()
    out: list[dict[str, Any]] = []
    try:
        for dataset in datasets:
            if bulk_refs is None:
                out.append(_naturalize(dataset, table))
            else:
                refs: list[dict[str, Any]] = []
                out.append(_naturalize(dataset, table, 0, refs))
                bulk_refs.append(refs)
    except MalformedResponseError as exc:
        raise MalformedResponseError(f"dataset {len(out)}: {exc}") from None
    except (AttributeError, TypeError, KeyError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {exc}"
        raise MalformedResponseError(f"not a list of DICOM JSON datasets: dataset {len(out)}: {detail}"[:500]) from None
    return out


# -- naturalized -> DICOM JSON ---------------------------------------------------------------


def _resolve_vr(key: str, vr_map: Mapping[str, str] | None, dict_vr: str | None, value: Any) -> str:
    if vr_map and key in vr_map:
        return vr_map[key]
    if dict_vr is None:
        return "UN"
    if " or " in dict_vr:
        choices = dict_vr.split(" or ")
        if "SS" in choices and isinstance(value, int | list) and _has_negative(value):
            return "SS"
        return "OW" if "OW" in choices else choices[0]
    return dict_vr


def _has_negative(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, int) and v < 0 for v in values)


# key -> (tag, dictionary VR), or None for an application field (``url``, ``imageId``...); filled as met,
# bounded: room for every dictionary keyword and tag, plus CACHE_LIMIT others
_KEY_CACHE: dict[str, tuple[str, str | None] | None] = {}
_KEY_CACHE_LIMIT = 2 * 8000 + CACHE_LIMIT  # pydicom's dictionary: about 5,000 keywords
_SCALARS = (str, int, float)


def _key_entry(key: str) -> tuple[str, str | None] | bool | None:
    """(tag, VR) of a key; None for an application field; False for a key that is neither."""
    entry = _keyword_table().get(key)
    if entry is not None:
        return entry
    if _HEX_TAG.match(key):
        tag = key.upper()
        known = _tag_table().get(tag)
        return (tag, known[1] if known else None)
    if key[:1].islower() or key[:1] == "_":
        return None
    return False


def _denaturalize(dataset: Mapping[str, Any], skip_unknown: bool, path: str, depth: int = 0) -> dict[str, Any]:
    # the gateway's hot path (every WADO-RS metadata answer): a plan per shape first (.shapes);
    # element by element, class checks before isinstance and each key resolved once per process
    planned = _shapes.denaturalize_planned(dataset, skip_unknown, path, depth)
    if planned is not None:
        return planned
    cache = _KEY_CACHE
    if not isinstance(dataset, Mapping):
        raise DatasetError(f"{path or 'the dataset'}: a sequence item is a mapping, not {type(dataset).__name__}")
    vr_map = dataset.get(VR_MAP_KEY)
    if vr_map is not None and not (isinstance(vr_map, Mapping) and all(isinstance(v, str) for v in vr_map.values())):
        raise DatasetError(f"{path}{VR_MAP_KEY} must map keywords to VR strings, not {vr_map!r}"[:300])
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in dataset.items():
        entry = cache.get(key, False) if key.__class__ is str else False
        if entry is False:
            if not isinstance(key, str):
                raise DatasetError(
                    f"{path}{key!r}: a key of a naturalized dataset is a string, not {type(key).__name__}"
                )
            entry = _key_entry(key)
            if entry is False:
                if not skip_unknown:
                    unknown.append(key)
                continue
            if len(cache) >= _KEY_CACHE_LIMIT:
                cache.clear()
            cache[key] = entry
        if entry is None:
            continue  # application fields such as url, imageId, isLoaded, and _vrMap
        tag, dict_vr = entry
        if vr_map and key in vr_map:
            vr = vr_map[key]
        elif dict_vr is not None and " or " not in dict_vr:
            vr = dict_vr
        else:
            vr = _resolve_vr(key, None, dict_vr, value)
        cls = value.__class__
        if value is None:
            out[tag] = {"vr": vr}
        elif cls in _SCALARS and vr != "PN":
            out[tag] = {"vr": vr, "Value": [value]}
        elif cls is list and vr != "SQ" and vr != "PN":
            out[tag] = {"vr": vr, "Value": list(value)}
        else:
            out[tag] = _element(key, value, vr, skip_unknown, path, depth)
    if unknown:
        listed = ", ".join(f"{path}{k}" for k in sorted(unknown)[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise DatasetError(f"not DICOM keywords (and not 8-hex tags): {listed[:1000]}{more}")
    return dict(sorted(out.items()))


def _element(key: str, value: Any, vr: str, skip_unknown: bool, path: str, depth: int) -> dict[str, Any]:
    """The less common shapes: references, sequences, person names, bytes, tuples."""
    element: dict[str, Any] = {"vr": vr}
    if vr == "SQ" and depth >= MAX_DEPTH:
        raise DatasetError(f"{path}{key}: sequences nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping) and vr != "PN":
        if "BulkDataURI" in value:
            element["BulkDataURI"] = value["BulkDataURI"]
        elif "InlineBinary" in value:
            element["InlineBinary"] = value["InlineBinary"]
        elif vr == "SQ":
            element["Value"] = [_denaturalize(value, skip_unknown, f"{path}{key}.", depth + 1)]
        else:
            raise DatasetError(f"{path}{key}: a {vr} value cannot be a mapping: {value!r}"[:300])
    elif vr == "SQ":
        items = value if isinstance(value, list | tuple) else [value]
        element["Value"] = [_denaturalize(item, skip_unknown, f"{path}{key}.", depth + 1) for item in items]
    elif vr == "PN":
        items = value if isinstance(value, list | tuple) else [value]
        element["Value"] = [item if isinstance(item, Mapping) else {"Alphabetic": str(item)} for item in items]
    elif isinstance(value, list | tuple):
        element["Value"] = list(value)
    elif isinstance(value, bytes | bytearray):
        import base64

        element["InlineBinary"] = base64.b64encode(bytes(value)).decode("ascii")
    else:
        element["Value"] = [value]
    return element


def denaturalize(naturalized: Mapping[str, Any], *, skip_unknown: bool = False) -> dict[str, Any]:
    """A naturalized dict -> DICOM JSON, tags in ascending order.

    Keys starting with a lower-case letter or ``_`` (``url``, ``imageId``, ``_vrMap``) are
    application fields and are left out. Any other key that is neither a keyword nor a tag is an
    error (a typo must not vanish silently) unless ``skip_unknown``.
    """
    if not isinstance(naturalized, Mapping):
        raise DatasetError(f"a naturalized dataset is a mapping, not {type(naturalized).__name__}")
    return _denaturalize(naturalized, skip_unknown, "")


# -- pydicom ---------------------------------------------------------------------------------


def from_pydicom(
    ds: Dataset,
    *,
    bulk_data_uri: Callable[[DataElement], str] | None = None,
    bulk_data_threshold: int = 1024,
) -> dict[str, Any]:
    """A pydicom Dataset -> naturalized. Binary values over the threshold become
    ``{"BulkDataURI": bulk_data_uri(element)}`` when a URI maker is given, else InlineBinary."""
    as_json = ds.to_json_dict(bulk_data_threshold=bulk_data_threshold, bulk_data_element_handler=bulk_data_uri)
    return naturalize(as_json)


def to_pydicom(naturalized: Mapping[str, Any], *, bulk_data_uri_handler: Callable[..., Any] | None = None) -> Dataset:
    """A naturalized dict -> pydicom Dataset (via DICOM JSON, pydicom's own reader)."""
    from pydicom import Dataset

    return Dataset.from_json(denaturalize(naturalized), bulk_data_uri_handler=bulk_data_uri_handler)
