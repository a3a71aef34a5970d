"""Conformance checks of the retrieve side: metadata into the store, image ids, frames, errors, helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import DataSourcesError, NotFoundError, NotSupportedError
from ..transfer import EXPLICIT_LE, label_of
from .checks_query import UNKNOWN_UID, ConformanceError, expect
from .target import ExpectedFrames, Target
from .values import value_problems

__all__ = ["check_errors", "check_frames", "check_helpers", "check_image_ids", "check_metadata", "read_frames"]

# attributes a search row and the stored instance must agree on when both carry them
_SAME = ("PatientID", "PatientName", "StudyDate", "StudyDescription", "AccessionNumber", "Modality", "SeriesNumber")


def _load(target: Target, uid: str) -> dict[str, Any]:
    target.data_source.retrieve.series.metadata(uid)
    study = target.store.get_study(uid)
    expect(study is not None, f"retrieve.series.metadata({uid}) should add the study to the host's store")
    return study


def check_metadata(target: Target) -> None:
    """``retrieve.series.metadata`` fills the store with the series and instances the searches give."""
    ds = target.data_source
    for known in target.studies:
        uid = known.study_instance_uid
        study_row = ds.query.studies.search({"StudyInstanceUID": uid})[0]
        study = _load(target, uid)
        series_rows = {r["SeriesInstanceUID"]: r for r in ds.query.series.search(uid)}
        stored = {s["SeriesInstanceUID"]: s for s in study.get("series", ())}
        expect(
            set(stored) == set(series_rows),
            f"study {uid}: the store holds series {sorted(stored)}, the search gives {sorted(series_rows)}",
        )
        for series_uid, series in stored.items():
            rows = {r["SOPInstanceUID"]: r for r in ds.query.instances.search(uid, series_uid)}
            instances = {i["SOPInstanceUID"]: i for i in series.get("instances", ())}
            expect(
                set(instances) == set(rows),
                f"series {series_uid}: the store holds {len(instances)} instances, the search gives {len(rows)}",
            )
            for sop, instance in instances.items():
                problems = value_problems(instance, "instance")
                expect(not problems, f"instance {sop} in the store breaks the value contract: {'; '.join(problems)}")
                for source_row in (study_row, series_rows[series_uid], rows[sop]):
                    for key in _SAME:
                        if source_row.get(key) is not None and instance.get(key) is not None:
                            expect(
                                source_row[key] == instance[key],
                                f"instance {sop}: {key} is {instance[key]!r} in the metadata, "
                                f"{source_row[key]!r} in the search",
                            )


def check_image_ids(target: Target) -> None:
    """Each stored instance has an image id, and the store finds the instance by it."""
    ds = target.data_source
    for known in target.studies:
        study = _load(target, known.study_instance_uid)
        for series in study.get("series", ()):
            instances = list(series.get("instances", ()))
            for instance in instances:
                image_id = ds.get_image_ids_for_instance(instance)
                expect(isinstance(image_id, str) and image_id, f"get_image_ids_for_instance gave {image_id!r}")
                if instance.get("imageId"):
                    found = target.store.get_instance_by_image_id(instance["imageId"])
                    expect(found is not None and found.get("SOPInstanceUID") == instance["SOPInstanceUID"],
                           f"the store does not find instance {instance['SOPInstanceUID']} by its imageId")  # fmt: skip
            ids = ds.get_image_ids_for_display_set({"instances": instances, "images": instances})
            expect(
                isinstance(ids, list) and len(ids) >= len(instances), "one image id per instance (or frame) at least"
            )
            expect(all(isinstance(i, str) and i for i in ids), "image ids are non-empty strings")


def read_frames(
    data_source: Any, study: str, series: str, sop: str, numbers: list[int], meta: Mapping[str, Any]
) -> list[bytes]:
    """Frames as the source hands them out: ``retrieve.frames``, else cut from PixelData bulk data."""
    from ..gateway.frames import source_frames

    return source_frames(data_source, study, series, sop, numbers, lambda: meta)


def _decoded_equal(frame: bytes, meta: Mapping[str, Any], expected: ExpectedFrames, index: int) -> bool:
    import numpy as np

    from ..transcode import can_decode, decode_frame

    array = expected.dataset.pixel_array
    reference = array[index] if len(expected.frames) > 1 else array
    ts = label_of(frame)
    if ts == EXPLICIT_LE:
        got = np.frombuffer(frame, dtype=reference.dtype.newbyteorder("<")).reshape(reference.shape)
    elif ts is not None and can_decode(ts):
        got = decode_frame(frame, meta, ts)
    else:
        return True  # no decoder here: the bytes were compared already
    return bool(np.array_equal(got, reference))


def check_frames(target: Target) -> None:
    """Frames equal the expected bytes, carry the expected transfer syntax, and decode to the same pixels."""
    ds = target.data_source
    for known in target.studies:
        if not known.frames:
            continue
        study = _load(target, known.study_instance_uid)
        for expected in known.frames:
            meta = target.store.get_instance(
                expected.study_instance_uid, expected.series_instance_uid, expected.sop_instance_uid
            )
            expect(meta is not None, f"instance {expected.sop_instance_uid} is not in the store after the retrieve")
            numbers = list(range(1, len(expected.frames) + 1))
            got = read_frames(
                ds, study["StudyInstanceUID"], expected.series_instance_uid, expected.sop_instance_uid, numbers, meta
            )
            expect(len(got) == len(numbers), f"{expected.sop_instance_uid}: {len(got)} frames for {len(numbers)} asked")
            for i, (frame, want) in enumerate(zip(got, expected.frames, strict=True)):
                where = f"instance {expected.sop_instance_uid} frame {i + 1}"
                expect(bytes(frame) == bytes(want), f"{where}: {len(frame)} bytes differ from the {len(want)} expected")
                expect(label_of(frame) == want.transfer_syntax,
                       f"{where}: labelled {label_of(frame)!r}, stored as {want.transfer_syntax!r}")  # fmt: skip
                if expected.dataset is not None:
                    expect(_decoded_equal(frame, meta, expected, i), f"{where}: decoded pixels differ from pixel_array")
            try:
                read_frames(ds, study["StudyInstanceUID"], expected.series_instance_uid, expected.sop_instance_uid,
                            [len(numbers) + 1], meta)  # fmt: skip
            except NotFoundError:
                pass
            else:
                raise ConformanceError(f"{expected.sop_instance_uid}: a frame past the last must raise NotFoundError")


def check_errors(target: Target) -> None:
    """Unknown UIDs raise NotFoundError; refused operations raise NotSupportedError (typed, never bare)."""
    ds = target.data_source
    try:
        ds.retrieve.series.metadata(UNKNOWN_UID)
    except NotFoundError:
        pass
    except Exception as exc:
        raise ConformanceError(f"metadata of an unknown study: NotFoundError, not {type(exc).__name__}: {exc}") from exc
    else:
        raise ConformanceError("metadata of an unknown study must raise NotFoundError")
    if "frames" in ds.retrieve:
        try:
            ds.retrieve.frames(UNKNOWN_UID, UNKNOWN_UID, UNKNOWN_UID, [1])
        except (NotFoundError, NotSupportedError):
            pass
        except Exception as exc:
            raise ConformanceError(f"frames of an unknown instance: NotFoundError, not {type(exc).__name__}") from exc
        else:
            raise ConformanceError("frames of an unknown instance must raise NotFoundError")
    for operation in sorted(target.unsupported):
        call = {
            "store.dicom": lambda: ds.store.dicom([]),
            "reject.series": lambda: ds.reject.series(UNKNOWN_UID, UNKNOWN_UID),
        }
        try:
            call[operation]()
        except NotSupportedError:
            continue
        except Exception as exc:
            raise ConformanceError(f"{operation}: NotSupportedError, not {type(exc).__name__}: {exc}") from exc
        raise ConformanceError(f"{operation} is declared unsupported but did not raise NotSupportedError")


def check_helpers(target: Target) -> None:
    """Helpers are reachable and callable; get_config gives a dict."""
    ds = target.data_source
    for name in ds.helpers:
        expect(callable(getattr(ds.helpers, name)), f"helper {name} is not callable")
    config = ds.get_config()
    expect(isinstance(config, dict), f"get_config gave {type(config).__name__}, not a dict")
    try:
        ds.helpers.no_such_helper_of_the_kit  # noqa: B018
    except DataSourcesError:
        pass
    except AttributeError as exc:
        raise ConformanceError("an unknown helper must raise HelperNotFoundError") from exc
