"""The sources a user names: lines of a sources file, names given and made, passwords never shown, the file
followed while it is edited (bad lines named and skipped, a file being rewritten never stops the cameras)."""

import os

import pytest

from catmood.errors import CatmoodError
from catmood.runtime.sourcelist import (SourceEntry, SourcesFile, collect_sources, display, name_entries,
                                        parse_line)


@pytest.mark.parametrize("line, parsed", [
    ("rtsp://10.0.0.2/stream", (None, "rtsp://10.0.0.2/stream")),
    ("  hall = rtsp://u:p@10.0.0.2/live?x=1  ", ("hall", "rtsp://u:p@10.0.0.2/live?x=1")),
    ("http://cam/video.cgi?res=hd", (None, "http://cam/video.cgi?res=hd")),   # '=' inside a URL: no name
    ("videos/a=b.mp4", (None, "videos/a=b.mp4")),
    ("nvarguscamerasrc ! appsink name=sink", (None, "nvarguscamerasrc ! appsink name=sink")),
    ("door=0  # the front door", ("door", "0")),
    ("# a comment", None), ("", None), ("   ", None),
])
def test_lines(line, parsed):
    assert parse_line(line) == parsed


@pytest.mark.parametrize("line, words", [("bad name=0", "not file-safe"), ("../x=0", None),
                                         (".hidden=0", "not file-safe"), ("a" * 65 + "=0", "not file-safe"),
                                         ("empty=", "names nothing")])
def test_bad_names(line, words):
    if words is None:  # a path: not a name at all
        assert parse_line(line)[0] is None
        return
    with pytest.raises(CatmoodError, match=words):
        parse_line(line)


def test_passwords_are_masked_wherever_they_stand():
    assert display("rtsp://admin:hunter2@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert display("http://user@cam/video") == "http://user@cam/video"  # no password: nothing to hide
    assert display("rtspsrc location=rtsp://a:b@cam/x ! appsink") == "rtspsrc location=rtsp://a:***@cam/x ! appsink"
    assert display("0") == "0" and display("clips/cat.mp4") == "clips/cat.mp4"


def test_names_given_kept_others_numbered_and_repeats_refused_or_skipped():
    entries = name_entries([(None, "a.mp4"), ("cam0", "b.mp4"), (None, "c.mp4")])
    assert entries == [SourceEntry("cam1", "a.mp4"), SourceEntry("cam0", "b.mp4"), SourceEntry("cam2", "c.mp4")]
    with pytest.raises(CatmoodError, match="the name 'Hall' is used twice"):
        name_entries([("hall", "a.mp4"), ("Hall", "b.mp4")])
    reported = []
    kept = name_entries([("x", "a.mp4"), ("y", "a.mp4")], where=["f:1", "f:2"], report=reported.append)
    assert kept == [SourceEntry("x", "a.mp4")] and reported == ["f:2: a.mp4 is listed twice; this one is skipped"]
    # a running unnamed camera keeps its name when lines above it go
    assert name_entries([(None, "c.mp4")], known={"c.mp4": "cam2"}) == [SourceEntry("cam2", "c.mp4")]


def test_collect_names_every_bad_line_with_its_place(tmp_path):
    listed = tmp_path / "cams.txt"
    listed.write_bytes("\ufeffhall=0\nbad name=1\n\n# x\nhall=2\nrtsp://u:secret@cam/live\n".encode())
    reported = []
    entries = collect_sources(["porch=3"], listed, reported.append)
    assert [e.name for e in entries] == ["porch", "hall", "cam0"]
    assert entries[2].shown == "rtsp://u:***@cam/live"
    assert reported[0].startswith(f"{listed}:2: source name 'bad name' is not file-safe")
    assert reported[1] == f"{listed}:5: the name 'hall' is used twice; this one is skipped"
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9=0\n")
    with pytest.raises(CatmoodError, match="not UTF-8 text"):
        collect_sources([], tmp_path / "latin1.txt", reported.append)
    for endless in (tmp_path / "big.mp4", "/dev/zero"):  # a video given by mistake; a file with no end
        if endless != "/dev/zero":
            endless.write_bytes(b"\0" * (2 << 20))
        with pytest.raises(CatmoodError, match="over 1024 KiB is not a sources file"):
            collect_sources([], endless, reported.append)
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(CatmoodError, match="lists no source"):
        collect_sources([], tmp_path / "empty.txt", reported.append)


def test_the_file_followed_gives_its_new_entries_once_and_survives_being_rewritten(tmp_path):
    listed = tmp_path / "cams.txt"
    listed.write_text("a=0\n")
    reported = []
    followed = SourcesFile(listed, reported.append)
    assert followed.changed({"0": "a"}) is None  # unchanged
    listed.write_text("a=0\nb=1\n")
    os.utime(listed, ns=(1, 1))  # a new stamp even within one clock tick
    assert [e.name for e in followed.changed({"0": "a"})] == ["a", "b"]
    assert followed.changed({"0": "a", "1": "b"}) is None
    listed.unlink()  # an editor replacing the file: the running cameras are kept, said once
    assert followed.changed({}) is None and followed.changed({}) is None
    assert len(reported) == 1 and "the running sources are kept" in reported[0]
    listed.write_text("b=1\n")
    assert [e.name for e in followed.changed({"0": "a", "1": "b"})] == ["b"]
