"""clik.model_cache: the one per-version model cache of the API and the workers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from clik.model_cache import ModelCache, ModelLoadError


@dataclass
class Version:
    name: str
    bundle_uri: str


@dataclass
class Side:
    version: str


def test_loads_each_version_once_and_keeps_the_most_recent(tmp_path):
    calls = []

    def load(bundle):
        calls.append(bundle.name)
        return Side(bundle.name)

    cache = ModelCache(load, max_versions=2, what="text side")
    a, b, c = (Version(n, str(tmp_path / n)) for n in "abc")
    assert cache.get(a) is cache.get(a) and cache.loads == 1
    cache.get(b)
    cache.get(a)  # a is now the most recent: c pushes b out
    cache.get(c)
    assert cache.loaded() == ["a", "c"] and cache.peek("b") is None and calls == ["a", "b", "c"]


def test_many_threads_asking_at_once_make_one_load(tmp_path):
    started = threading.Event()

    def slow(bundle):
        started.set()
        time.sleep(0.2)
        return Side(bundle.name)

    cache = ModelCache(slow, max_versions=2, what="image encoder")
    v = Version("v", str(tmp_path / "v"))
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(v))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1 and len(got) == 8 and all(g is got[0] for g in got)


def test_refuses_a_bundle_of_another_version_or_none(tmp_path):
    cache = ModelCache(lambda bundle: Side("other"), max_versions=1, what="text side")
    with pytest.raises(ModelLoadError, match="is version other, the store expects v"):
        cache.get(Version("v", str(tmp_path)))
    with pytest.raises(ModelLoadError, match="no bundle location"):
        cache.get(Version("v", ""))

    def broken(bundle):
        raise FileNotFoundError(bundle / "bundle.json")

    with pytest.raises(ModelLoadError, match="cannot load the text side of v"):
        ModelCache(broken, 1, "text side").get(Version("v", "file://" + str(tmp_path)))
    assert issubclass(ModelLoadError, ValueError)  # what the worker's callers catch


def test_a_role_chooses_what_a_failed_load_raises(tmp_path):
    class Unavailable(Exception):
        pass

    class RoleCache(ModelCache):
        unavailable = Unavailable

    with pytest.raises(Unavailable):
        RoleCache(lambda bundle: Side("x"), 1, "text side").get(Version("v", str(tmp_path)))
