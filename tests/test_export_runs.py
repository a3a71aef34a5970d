"""Export runs over time: incremental, prune, failures, SIGKILL mid-run, a moved tree, fsspec destinations, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pytest
from datasources import Host
from datasources.errors import ExportError, NotFoundError
from datasources.export import export_static_wado
from support.dicomgen import StudySpec, make_study, write_datasets
from support.staticcheck import compare_with_source, static_host
from support.statictree import serve_static_tree
from test_export import REPO, check_tree_layout, local_host, tree_files

A = StudySpec("export-a", "ALPHA^ANN", patient_id="EXP001", n_series=2, n_instances=3, study_date="20200101")
B = StudySpec("export-b", "BRAVO^BEN", patient_id="EXP002", modality="MR", n_instances=2, study_date="20210101")
C = StudySpec("export-c", "CHARLIE^CY", patient_id="EXP003", n_instances=2, frames=3, study_date="20220101")


def listed(tree: Path) -> list[str]:
    import gzip

    rows = orjson.loads(gzip.decompress((tree / "studies/index.json.gz").read_bytes()))
    return sorted(r["0020000D"]["Value"][0] for r in rows)


def stamps(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tree)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in tree.rglob("*") if p.is_file()}


def read_back(host: Host, source: str, tree: Path, **serve: Any) -> dict[str, int]:
    with serve_static_tree(tree, **serve) as url:
        return compare_with_source(host, source, static_host(url))


def test_incremental_runs_write_only_what_changed_and_prune_removes(tmp_path: Path) -> None:
    data, tree = tmp_path / "data", tmp_path / "tree"
    write_datasets(make_study(A), data / "a")
    write_datasets(make_study(B), data / "b")
    first = export_static_wado(local_host(data), str(tree))
    assert [s.status for s in first.studies] == ["written", "written"]
    before = stamps(tree)

    again = export_static_wado(local_host(data), str(tree))
    assert [s.status for s in again.studies] == ["unchanged", "unchanged"]
    assert again.to_dict()["frames"] == 0 and stamps(tree) == before  # not one file rewritten

    # one more instance in one series of A, a new study C
    extra = make_study(StudySpec("export-a", "ALPHA^ANN", patient_id="EXP001", n_series=2, n_instances=4,
                                 study_date="20200101"))  # fmt: skip
    new = [ds for ds in extra if ds.SOPInstanceUID not in {d.SOPInstanceUID for d in make_study(A)}]
    write_datasets([new[0]], data / "a")
    write_datasets(make_study(C), data / "c")
    host = local_host(data)
    third = export_static_wado(host, str(tree))
    by_uid = {s.uid: s for s in third.studies}
    assert by_uid[A.study_uid].status == "written" and by_uid[A.study_uid].series_written == 1
    assert by_uid[B.study_uid].status == "unchanged" and by_uid[C.study_uid].status == "written"
    after = stamps(tree)
    b_files = [k for k in before if B.study_uid in k]
    assert b_files and all(after[k] == before[k] for k in b_files)
    counts = read_back(host, "local", tree)
    assert counts["instances"] == 7 + 2 + 2 and counts["frames"] == 7 + 2 + 6

    # an instance deleted from the source: its files leave the tree with the next run
    gone = next((data / "a").glob("*.dcm"))
    sop = gone.stem
    gone.unlink()
    shutil.rmtree(data / "b")
    host = local_host(data)
    fourth = export_static_wado(host, str(tree))
    assert not [k for k in tree_files(tree) if sop in k]
    assert B.study_uid in listed(tree)  # without --prune a study gone from the source stays
    assert {s.uid for s in fourth.studies} == {A.study_uid, C.study_uid}

    pruned = export_static_wado(host, str(tree), prune=True)
    assert [s.uid for s in pruned.studies if s.status == "pruned"] == [B.study_uid]
    assert listed(tree) == sorted([A.study_uid, C.study_uid]) and not (tree / "studies" / B.study_uid).exists()
    check_tree_layout(tree)
    assert read_back(host, "local", tree)["studies"] == 2


def test_filters_and_study_list_select(tmp_path: Path) -> None:
    data, tree = tmp_path / "data", tmp_path / "tree"
    for spec in (A, B, C):
        write_datasets(make_study(spec), data / str(spec.seed))
    host = local_host(data)
    export_static_wado(host, str(tree), filters={"PatientName": "BRAVO*"})
    assert listed(tree) == [B.study_uid]
    export_static_wado(host, str(tree), studies=[A.study_uid, C.study_uid])
    assert listed(tree) == sorted([A.study_uid, B.study_uid, C.study_uid])
    report = export_static_wado(host, str(tree), studies=[C.study_uid], prune=True)
    assert listed(tree) == [C.study_uid] and report.count("pruned") == 2
    with pytest.raises(NotFoundError, match=r"1\.2\.3\.4"):
        export_static_wado(host, str(tree), studies=["1.2.3.4"])
    assert listed(tree) == [C.study_uid]


def _config(path: Path, root: Path, **configuration: Any) -> Path:
    path.write_text(json.dumps({"dataSources": [{"namespace": "default.dataSourcesModule.dicomlocal",
                    "sourceName": "local", "configuration": {"root": str(root), **configuration}}]}))  # fmt: skip
    return path


def test_a_failing_study_is_reported_and_the_rest_exported(tmp_path: Path) -> None:
    data, tree = tmp_path / "data", tmp_path / "tree"
    write_datasets(make_study(A), data / "a")
    write_datasets(make_study(B), data / "b")
    cache = tmp_path / "cache"
    host = Host.from_config(_config(tmp_path / "index.json", data, cache=str(cache)))
    assert len(host.get_data_source("local").query.studies.search()) == 2  # indexed
    next((data / "a").glob("*.dcm")).unlink()  # still in the index: reading its frames fails
    report = export_static_wado(host, str(tree))
    failed = {s.uid: s for s in report.failed}
    assert list(failed) == [A.study_uid] and "deleted since it was indexed" in (failed[A.study_uid].error or "")
    assert listed(tree) == [B.study_uid] and not report.ok
    check_tree_layout(tree)

    # the command, on the same index without rescanning: exit 1, the failure listed, the other study exported
    config = _config(tmp_path / "app.json", data, cache=str(cache), indexOnInitialize=False)
    out = subprocess.run(
        [sys.executable, "-m", "datasources", "export", "static-wado", str(tmp_path / "tree2"), "-c", str(config),
         "--json", "--workers", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout)
    assert summary["failed"] == 1 and summary["written"] == 1 and summary["instances"] == 2
    errors = [s["error"] for s in summary["studies"] if s["status"] == "failed"]
    assert len(errors) == 1 and "deleted since it was indexed" in errors[0]
    assert "1 of 2 studies failed" in out.stderr
    assert listed(tmp_path / "tree2") == [B.study_uid]


def test_a_moved_tree_served_under_another_prefix(tmp_path: Path) -> None:
    host = Host()
    assert export_static_wado(host, (tmp_path / "tree").as_uri()).ok  # a file:// URL
    moved = tmp_path / "elsewhere" / "site"
    shutil.move(str(tmp_path / "tree"), str(moved))
    counts = read_back(host, "sample", moved, prefix="/cdn/archive-2026")
    assert counts["studies"] == 6 and counts["frames"] >= 30


def test_memory_destination(tmp_path: Path) -> None:
    host = Host()
    url = "memory://export-test/site"
    report = export_static_wado(host, url)
    assert report.ok and report.dest == url
    fs = fsspec.filesystem("memory")
    local = tmp_path / "copy"
    fs.get("/export-test/site", str(local), recursive=True)
    check_tree_layout(local)
    assert read_back(host, "sample", local)["instances"] == 30
    assert export_static_wado(host, url).count("unchanged") == 6  # the manifests are read back from memory
    fs.rm("/export-test", recursive=True)


def test_bad_destinations_are_typed_errors(tmp_path: Path) -> None:
    host = Host()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_static_wado(host, str(tmp_path / "file"))
    with pytest.raises(ExportError, match="nope://"):
        export_static_wado(host, "nope://bucket/x")
    import importlib.util

    if importlib.util.find_spec("s3fs") is None:  # s3:// is documented, not required: without s3fs, a clear error
        with pytest.raises(ExportError, match="s3fs"):
            export_static_wado(host, "s3://bucket/x")
    assert not (tmp_path / "file").is_dir()


def _frames_in(tree: Path) -> int:
    return sum(1 for _ in tree.glob("studies/*/series/*/instances/*/frames/*"))


def _check_readable(host: Host, tree: Path) -> list[str]:
    """Every listed study: its series, metadata and every frame readable and the source's bytes."""
    ds = host.get_data_source("local")
    with serve_static_tree(tree, content_encoding=False) as url:
        static = static_host(url)
        st = static.get_data_source()
        uids = [r["StudyInstanceUID"] for r in st.query.studies.search()]
        for study in uids:
            for row in st.query.series.search(study):
                se = row["SeriesInstanceUID"]
                st.retrieve.series.metadata(study, series_instance_uids=[se])
                for instance in static.metadata_store.get_series(study, se)["instances"]:
                    sop = instance["SOPInstanceUID"]
                    got = st.retrieve.frames(study, se, sop, [1])[0]
                    assert got == ds.retrieve.frames(study, se, sop, [1])[0]
                st.delete_study_metadata(study)
                static.metadata_store.remove_study(study)
    return uids


def test_sigkill_mid_run_leaves_the_previous_tree_readable(tmp_path: Path) -> None:
    data, tree = tmp_path / "data", tmp_path / "tree"
    big = [StudySpec(f"export-kill-{i}", f"KILL^{i}", patient_id=f"K{i}", n_series=2, n_instances=40, rows=64,
                     cols=64) for i in range(4)]  # fmt: skip
    write_datasets(make_study(big[0]), data / "0")
    host = local_host(data)
    assert export_static_wado(host, str(tree)).ok
    previous = listed(tree)
    for i, spec in enumerate(big[1:], start=1):
        write_datasets(make_study(spec), data / str(i))
    # a changed series in the exported study too: its instances grow from 40 to 41
    grown = make_study(StudySpec("export-kill-0", "KILL^0", patient_id="K0", n_series=2, n_instances=41, rows=64,
                                 cols=64))  # fmt: skip
    write_datasets([d for d in grown if d.InstanceNumber == 41], data / "0")
    config = _config(tmp_path / "app.json", data)
    command = [sys.executable, "-m", "datasources", "export", "static-wado", str(tree), "-c", str(config),
               "--workers", "1"]  # fmt: skip
    local_host(data).get_data_source("local").query.studies.search()  # index the new files once, before the runs
    start_frames = _frames_in(tree)
    for extra in (2, 60, 100):  # kill early, in the middle, later (each run redoes what the last did not record)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _frames_in(tree) < start_frames + extra and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert process.poll() is None, f"the run ended before it was killed: {process.stderr.read()!r}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stderr.close()
        assert process.returncode == -signal.SIGKILL
        now = listed(tree)
        assert set(previous) <= set(now)  # the study list is the previous one, or a later one, never less
        assert _check_readable(local_host(data), tree)
        start_frames = _frames_in(tree)
        previous = now
    host = local_host(data)
    final = export_static_wado(host, str(tree))
    assert final.ok and listed(tree) == sorted(s.study_uid for s in big)
    check_tree_layout(tree)  # the killed runs' temporary files are gone too
    counts = read_back(host, "local", tree)
    assert counts["instances"] == 4 * 80 + 2


def test_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal (a pty here) the command draws its bars: the studies, then each study's instances."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "datasources", "export", "static-wado", str(tmp_path / "site")],
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    import re

    shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode("utf-8", "replace"))
    assert process.returncode == 0, shown
    counts = set(re.findall(r"\d+/\d+", shown))
    assert "studies" in shown and "6/6" in counts  # the studies bar, complete
    assert "2.25.149445395880599934171435059992354054150" in shown and "0/7" in counts  # the first study's bar
    assert "6 written, 0 unchanged" in shown


def test_a_uid_that_would_leave_the_tree_fails_its_study_only(tmp_path: Path) -> None:
    sample = REPO / "plugins/default/datasources_default/dicomjson/sample"
    document = json.loads((sample / "sample.json").read_text())
    evil = document["studies"][0]
    evil["StudyInstanceUID"] = "../../escaped"
    for series in evil["series"]:
        for instance in series["instances"]:
            instance["metadata"]["StudyInstanceUID"] = "../../escaped"
    shutil.copytree(sample, tmp_path / "sample")  # the instances beside the file, where its URLs point
    (tmp_path / "sample/evil.json").write_text(json.dumps(document))
    entry = {"namespace": "default.dataSourcesModule.dicomjson", "sourceName": "evil",
             "configuration": {"path": str(tmp_path / "sample/evil.json")}}  # fmt: skip
    host = Host.from_config({"dataSources": [entry]})
    report = export_static_wado(host, str(tmp_path / "deep/tree"))
    failed = report.failed
    assert len(failed) == 1 and "UnsafePathError" in (failed[0].error or "") and "../../escaped" in failed[0].error
    assert report.count("written") == 5
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep/escaped").exists()


def test_temporary_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    """Whatever file a run was writing when killed, the next run removes its temporary name."""
    host, tree = Host(), tmp_path / "tree"
    assert export_static_wado(host, str(tree)).ok
    study = next(p for p in (tree / "studies").iterdir() if p.is_dir())
    series = next(p for p in (study / "series").iterdir() if p.is_dir())
    leftovers = [tree / "studies/index.json.gz.tmp-dead", study / "index.json.gz.tmp-dead",
                 study / "export.json.tmp-dead", series / "metadata.gz.tmp-dead"]  # fmt: skip
    for path in leftovers:
        path.write_bytes(b"half")
    (study / "export.json").write_text("{")  # and its record never finished: the study is redone
    report = export_static_wado(host, str(tree))
    assert {s.uid: s.status for s in report.studies}[study.name] == "written"
    assert not [p for p in leftovers if p.exists()]
    check_tree_layout(tree)
