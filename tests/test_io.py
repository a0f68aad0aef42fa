import os
from pathlib import Path

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


def test_files_inside_a_directory_output_get_the_usual_modes(tmp_path):
    """safetensors writes 0600: a merged model or final VLM must still be readable by the group."""
    import os

    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "model", directory=True) as tmp:
            (tmp / "sub").mkdir(mode=0o700)
            fd = os.open(tmp / "sub" / "model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    finally:
        os.umask(old)
    assert (tmp_path / "model" / "sub" / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "model" / "sub").stat().st_mode & 0o777 == 0o750


def test_a_file_output_never_deletes_a_directory(tmp_path):
    tree = tmp_path / "results"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "keep.txt").write_text("data")
    with pytest.raises(CompassError, match="is a directory"):
        write_jsonl(tree, [{"a": 1}])
    assert (tree / "sub" / "keep.txt").read_text() == "data"
    # nor does a directory output replace a directory no compass stage wrote, or a file
    with pytest.raises(CompassError, match="no compass stage wrote"):
        with atomic_output(tree, directory=True):
            pass
    assert (tree / "sub" / "keep.txt").read_text() == "data"
    (tmp_path / "f.jsonl").write_text("x")
    with pytest.raises(CompassError, match="is a file"):
        with atomic_output(tmp_path / "f.jsonl", directory=True):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jsonl", "results"]


def test_a_directory_output_replaces_its_own_earlier_version(tmp_path):
    from compass.io import MANIFEST

    for text in ("1", "2"):
        with atomic_output(tmp_path / "model", directory=True) as tmp:
            (tmp / "a").write_text(text)
    assert (tmp_path / "model" / "a").read_text() == "2"
    assert (tmp_path / "model" / MANIFEST).is_file()


def test_leftovers_of_a_killed_writer_are_removed(tmp_path, capsys):
    (tmp_path / ".out.jsonl.abcd_123.partial").write_text("torn")
    (tmp_path / ".adapter.partial").mkdir()  # a multi-process write
    (tmp_path / ".adapter.partial" / "w").write_text("torn")
    (tmp_path / ".out.jsonl.x.abcd_123.partial").write_text("another output's, still being written")
    write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    with atomic_output(tmp_path / "adapter", directory=True):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.jsonl.x.abcd_123.partial", "adapter", "out.jsonl"]
    assert "removed 1 leftover(s) of an interrupted earlier write" in capsys.readouterr().err


def _directory_output(path):
    with atomic_output(path, directory=True) as tmp:
        (tmp / "config.json").write_text('{"model_type": "llama"}')
        (tmp / "weights").mkdir()
        (tmp / "weights" / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "weights" / "model.safetensors").unlink(), "model.safetensors: missing, listed in compass-manifest.json"),
    (lambda d: os.truncate(d / "weights" / "model.safetensors", 100), "model.safetensors: 100 bytes, compass-manifest.json says 16384"),
    (lambda d: (d / "weights" / "model.safetensors").write_bytes(bytes(16384)), "model.safetensors: content differs"),
    (lambda d: (d / "compass-manifest.json").write_text("{"), "compass-manifest.json: unreadable manifest"),
])
def test_a_damaged_directory_output_is_named_before_it_is_used(tmp_path, damage, message):
    from compass.io import require_dir

    model = _directory_output(tmp_path / "model")
    assert require_dir(model, "model") == model
    damage(model)
    with pytest.raises(CompassError, match=message) as err:
        require_dir(model, "model")
    assert f"delete {model} and run the stage that writes it again" in str(err.value)


def test_a_copied_directory_output_is_trusted_and_a_users_own_directory_is_read_as_is(tmp_path):
    import shutil

    from compass.io import MANIFEST, file_hashes, require_dir

    model = _directory_output(tmp_path / "model")
    shutil.copytree(model, tmp_path / "copy", copy_function=shutil.copy)  # new mtimes: hashes checked
    assert require_dir(tmp_path / "copy", "model")
    assert file_hashes(tmp_path / "copy") == file_hashes(model)
    (tmp_path / "copy" / MANIFEST).unlink()
    (tmp_path / "copy" / ".snakemake_timestamp").write_text("")
    assert require_dir(tmp_path / "copy", "model") and file_hashes(tmp_path / "copy") == file_hashes(model)


def test_a_scratch_directory_is_removed_at_the_end_and_its_leftover_by_the_next_writer(tmp_path):
    from compass.io import scratch_dir

    out = tmp_path / "pairs.jsonl"
    with atomic_output(out) as tmp, scratch_dir(out) as work:
        assert work.parent == tmp_path and work.name.startswith(".pairs.jsonl.")
        (work / "spill00000").write_text("sorted run")
        Path(tmp).write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]
    left = tmp_path / ".pairs.jsonl.k1ll3d_x.partial"  # what a SIGKILL mid-sort leaves
    left.mkdir()
    (left / "spill00000").write_text("sorted run")
    write_jsonl(out, [{"a": 1}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]
