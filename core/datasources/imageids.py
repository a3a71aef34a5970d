"""Image ids and route parameters: the rules every source shares (OHIF's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["image_ids_for_display_set", "instances_of", "number_of_frames", "study_uids_from_route"]


def instances_of(display_set: Any) -> list[Mapping[str, Any]]:
    """The instances of a display set: ``{"images": [...]}``, an object with ``.images``, or a list."""
    if isinstance(display_set, Mapping):
        images = display_set.get("images", display_set.get("instances"))
    else:
        images = getattr(display_set, "images", display_set)
    if images is None or isinstance(images, str | bytes) or not isinstance(images, Iterable):
        raise TypeError("a display set is a list of instances or has an 'images' list")
    return list(images)


def number_of_frames(instance: Mapping[str, Any]) -> int:
    try:
        return max(1, int(instance.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def image_ids_for_display_set(
    display_set: Any, image_id_for_instance: Callable[..., str], *, first_frame: int = 1
) -> list[str]:
    """One id per image, one per frame for multi-frame instances (frames counted from ``first_frame``)."""
    out: list[str] = []
    for instance in instances_of(display_set):
        frames = number_of_frames(instance)
        if frames > 1:
            out.extend(image_id_for_instance(instance, frame=first_frame + i) for i in range(frames))
        else:
            out.append(image_id_for_instance(instance))
    return out


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in str(v).split(",") if p.strip())
    return out


def study_uids_from_route(params: Mapping[str, Any] | None, query: Mapping[str, Any] | None) -> list[str]:
    """OHIF's rule: ``StudyInstanceUIDs`` from the route, overridden by the query string's, comma-split."""
    from_query: list[str] = []
    for key in ("StudyInstanceUIDs", "studyInstanceUIDs"):
        from_query += _split((query or {}).get(key))
    if from_query:
        return from_query
    for key in ("StudyInstanceUIDs", "studyInstanceUIDs"):
        found = _split((params or {}).get(key))
        if found:
            return found
    return []
