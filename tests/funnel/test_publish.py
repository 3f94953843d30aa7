"""Publishing a folder by swap (`funnel.core.publish`): the final path holds the old folder or the new
one, and a publish interrupted between its two fallback renames is put right by the next one."""
from __future__ import annotations

import os

import funnel.core.publish as publish
from funnel.core.publish import fresh_tmp, publish_folder, restore_interrupted


def _folder(path, text):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.txt").write_text(text)
    return path


def test_publish_swaps_the_whole_folder_and_leaves_nothing_behind(tmp_path):
    final = _folder(tmp_path / "coarse", "old")
    tmp = fresh_tmp(final)
    assert tmp.name == ".tmp-coarse" and not any(tmp.iterdir())
    _folder(tmp, "new")
    assert publish_folder(tmp, final) == final
    assert (final / "model.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coarse"]


def test_first_publish_and_a_stale_tmp(tmp_path):
    final = tmp_path / "models" / "coarse"
    final.parent.mkdir()
    _folder(final.with_name(".tmp-coarse"), "half of a killed run")
    tmp = fresh_tmp(final)  # the stale one is cleared
    assert not any(tmp.iterdir())
    _folder(tmp, "new")
    publish_folder(tmp, final)
    assert (final / "model.txt").read_text() == "new"


def test_without_exchange_a_publish_killed_between_its_renames_is_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "exchange", lambda a, b: False)  # a kernel or filesystem without it
    final = _folder(tmp_path / "coarse", "old")
    # the state a kill between the two renames leaves: the old folder parked, nothing at the final path
    os.replace(final, tmp_path / ".old-coarse")
    assert restore_interrupted(final) and (final / "model.txt").read_text() == "old"
    assert not restore_interrupted(final)  # nothing parked any more
    os.replace(final, tmp_path / ".old-coarse")
    tmp = _folder(fresh_tmp(final), "new")
    publish_folder(tmp, final)  # restores, then publishes by the two renames
    assert (final / "model.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coarse"]


def test_exchange_is_atomic_where_the_kernel_has_it(tmp_path):
    a, b = _folder(tmp_path / "a", "A"), _folder(tmp_path / "b", "B")
    if publish.exchange(a, b):
        assert (a / "model.txt").read_text() == "B" and (b / "model.txt").read_text() == "A"
    else:  # no renameat2 here: nothing moved
        assert (a / "model.txt").read_text() == "A"


def test_train_refuses_to_replace_a_folder_that_holds_no_model(tmp_path, tiny_dir, capsys):
    """The new model replaces its --out folder whole: a folder of other files is refused, untouched."""
    from funnel.cli.main import main

    out = tmp_path / "notes"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["-q", "--home", str(tmp_path / "home"), "train", "coarse", "--data", str(tiny_dir),
                 "--out", str(out)]) == 2
    assert "no coarse model (meta.json missing)" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and not (tmp_path / ".tmp-notes").exists()
