#!/usr/bin/env python3
"""Regenerate the bundled sample data of the dicomjson source.

Writes ``plugins/default/datasources_default/dicomjson/sample/sample.json`` (OHIF's
DICOM JSON format) and one tiny Part-10 file per instance beside it, which the JSON's
``url`` fields point at. Deterministic: the same script gives the same bytes.

    python scripts/make_sample_data.py
"""

from __future__ import annotations

import argparse
import json
import struct
import uuid
from pathlib import Path

NS = uuid.UUID("5c1d1f6e-3b1a-4d6e-9a49-6f3b8c1e2d10")
OUT = Path(__file__).resolve().parents[1] / "plugins/default/datasources_default/dicomjson/sample"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"

PATIENTS = [
    ("PAT0001", "LEE^ANNA^K", "19720314", "F"),
    ("PAT0002", "GARCIA^JOSE", "19580802", "M"),
    ("PAT0003", "MÜLLER^KLAUS", "19901121", "M"),
    ("PAT0004", "OKAFOR^NGOZI^A", "19851007", "F"),
]

# (patient index, date, time, modality, description, accession, [(series description, instances)])
STUDIES = [
    (0, "20190412", "091500", "CT", "CT CHEST W/O CONTRAST", "ACC1001", [("AXIAL 1.25MM LUNG", 4), ("AXIAL 5MM", 3)]),
    (0, "20210930", "141210", "MR", "MR BRAIN W/WO CONTRAST", "ACC1002", [("AX FLAIR", 3), ("AX T1 POST", 3)]),
    (1, "20200105", "080000", "CT", "CT ABDOMEN PELVIS W CONTRAST", "ACC2001", [("PORTAL VENOUS 3MM", 4)]),
    (2, "20221118", "163045", "MR", "MR KNEE LEFT", "ACC3001", [("SAG PD FS", 3), ("COR T1", 2)]),
    (3, "20230301", "120000", "CT", "CT HEAD W/O CONTRAST", "ACC4001", [("AXIAL 5MM BRAIN", 3)]),
    (3, "20240617", "101530", "MR", "MR LUMBAR SPINE", "ACC4002", [("SAG T2", 3), ("AX T2", 2)]),
]

ROWS = COLS = 8


def uid(*parts: object) -> str:
    return "2.25." + str(uuid.uuid5(NS, "/".join(str(p) for p in parts)).int)


def pixels(study: int, series: int, instance: int) -> bytes:
    return b"".join(
        struct.pack("<H", (study * 97 + series * 31 + instance * 7 + r * COLS + c) % 4096)
        for r in range(ROWS)
        for c in range(COLS)
    )


def write_part10(path: Path, meta: dict, study_fields: dict, series_fields: dict, pixel_data: bytes) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = meta["SOPClassUID"]
    file_meta.MediaStorageSOPInstanceUID = meta["SOPInstanceUID"]
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = uid("implementation")
    ds = FileDataset(str(path), {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    for source in (study_fields, series_fields, meta):
        for key, value in source.items():
            setattr(ds, key, value)
    ds.PixelData = pixel_data
    ds.save_as(path, enforce_file_format=True)


def build(out: Path) -> dict:
    (out / "instances").mkdir(parents=True, exist_ok=True)
    studies = []
    for s_idx, (p_idx, date, time, modality, description, accession, series_list) in enumerate(STUDIES):
        pid, name, birth, sex = PATIENTS[p_idx]
        study_uid = uid("study", s_idx)
        study_fields = {
            "StudyInstanceUID": study_uid,
            "StudyDate": date,
            "StudyTime": time,
            "PatientName": name,
            "PatientID": pid,
            "PatientBirthDate": birth,
            "PatientSex": sex,
            "AccessionNumber": accession,
            "StudyDescription": description,
            "StudyID": str(s_idx + 1),
        }
        study = {**study_fields, "PatientName": {"Alphabetic": name}, "Modalities": modality, "series": []}
        for se_idx, (series_description, count) in enumerate(series_list):
            series_uid = uid("series", s_idx, se_idx)
            series_fields = {
                "SeriesInstanceUID": series_uid,
                "SeriesNumber": se_idx + 1,
                "Modality": modality,
                "SeriesDescription": series_description,
                "SeriesDate": date,
                "SeriesTime": time,
            }
            series = {**series_fields, "instances": []}
            for i in range(count):
                sop_uid = uid("instance", s_idx, se_idx, i)
                meta = {
                    "SOPClassUID": CT_IMAGE if modality == "CT" else MR_IMAGE,
                    "SOPInstanceUID": sop_uid,
                    "InstanceNumber": i + 1,
                    "Rows": ROWS,
                    "Columns": COLS,
                    "SamplesPerPixel": 1,
                    "PhotometricInterpretation": "MONOCHROME2",
                    "BitsAllocated": 16,
                    "BitsStored": 12,
                    "HighBit": 11,
                    "PixelRepresentation": 0,
                    "PixelSpacing": [0.5, 0.5],
                    "SliceThickness": 5.0,
                    "ImagePositionPatient": [-2.0, -2.0, float(i * 5)],
                    "ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    "WindowCenter": 400 if modality == "CT" else 600,
                    "WindowWidth": 1500 if modality == "CT" else 1200,
                }
                if modality == "CT":
                    meta.update({"RescaleIntercept": -1024.0, "RescaleSlope": 1.0, "RescaleType": "HU"})
                relative = f"instances/{sop_uid}.dcm"
                write_part10(out / relative, meta, study_fields, series_fields, pixels(s_idx, se_idx, i))
                json_meta = dict(meta)
                json_meta["PixelData"] = {"BulkDataURI": relative}
                series["instances"].append({"metadata": json_meta, "url": f"dicomweb:{relative}"})
            study["series"].append(series)
        study["NumInstances"] = sum(len(s["instances"]) for s in study["series"])
        studies.append(study)
    return {"studies": studies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for old in (args.out / "instances").glob("*.dcm"):
        old.unlink()
    document = build(args.out)
    path = args.out / "sample.json"
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    n = sum(len(se["instances"]) for st in document["studies"] for se in st["series"])
    print(f"wrote {path} ({len(document['studies'])} studies, {n} instances)")


if __name__ == "__main__":
    main()
