"""Where the API processes of a host keep the shared catalogue index."""

from __future__ import annotations

from api.catalogue import default_catalogue_dir


def test_each_store_has_its_own_default_catalogue_folder(tmp_path, monkeypatch):
    url = "redis://127.0.0.1:6379/0"
    assert default_catalogue_dir(url, "clik:") == default_catalogue_dir(url, "clik:")
    assert default_catalogue_dir(url, "clik:") != default_catalogue_dir(url, "other:")
    monkeypatch.chdir(tmp_path)
    here = default_catalogue_dir(None, "clik:")  # the embedded default store, ./.clik/store
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert default_catalogue_dir(None, "clik:") != here
    assert default_catalogue_dir(str(tmp_path / ".clik" / "store"), "clik:") == here
