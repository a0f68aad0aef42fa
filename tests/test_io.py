import pytest

from compass.io import CompassError, JsonlError, atomic_output, iter_jsonl, read_jsonl, write_jsonl


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2\n{"id": 3}\n')
    with pytest.raises(JsonlError) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: ")
    errors = []
    assert [r["id"] for r in iter_jsonl(path, on_error="skip", errors=errors)] == [1, 3]
    assert [e.lineno for e in errors] == [3]


def test_missing_required_field_and_non_object(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1, "problem": "p"}\n[1, 2]\n')
    with pytest.raises(JsonlError, match=":2: expected a JSON object"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n')
    with pytest.raises(JsonlError, match=":1: missing field\\(s\\) problem"):
        read_jsonl(path, required=["id", "problem"])
    with pytest.raises(CompassError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out.jsonl"

    def rows():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(out, rows())
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_only_on_success(tmp_path):
    out = tmp_path / "model"
    with atomic_output(out, directory=True) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"
    with pytest.raises(ValueError):
        with atomic_output(out, directory=True) as tmp:
            (tmp / "a").write_text("2")
            raise ValueError
    assert (out / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_outputs_get_the_usual_modes(tmp_path):
    import os

    write_jsonl(tmp_path / "a.jsonl", [{"a": 1}])
    with atomic_output(tmp_path / "d", directory=True):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask
