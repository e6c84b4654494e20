"""``robntk data status|fetch`` and the data registry (robntk.data.sources / robntk.data.fetch).

Downloads are tested against an HTTP server on the loopback address (a thread of this process)
serving small fake files whose checksums a test-only registry knows; nothing leaves the machine.
The registry's own checksums are checked against the reference data directory ($ROBNTK_DATA, or
../shared/data; skipped with a reason when absent).
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from robntk.data import convert as C
from robntk.data import fetch as F
from robntk.data import sources as S
from robntk.data.entry import Download, Entry, Target


# --------------------------------------------------------------------------- fake files + registry
def _bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


A, B, X, Y = _bytes(200_000, 0), _bytes(5_000, 1), _bytes(30_000, 2), _bytes(7, 3)
TAR = _tar({"arch-py/x": X, "../evil": b"outside", "arch-py/y": Y, "arch-py/readme": b"not registered"})
SERVED = {"a.bin": A, "b.txt": B, "arch.tar.gz": TAR}


def _target(path: str, data: bytes, md5: bool = False) -> Target:
    return Target(path, len(data), None if md5 else _sha(data), hashlib.md5(data).hexdigest() if md5 else None)


def _download(name: str, data: bytes, base: str = "https://example.invalid/files") -> Download:
    return Download(f"{base}/{name}", len(data), _sha(data))


def _registry(base: str = "https://example.invalid/files") -> tuple[Entry, ...]:
    return (
        Entry(
            name="alpha",
            title="a",
            files=(_target("alpha/a.bin", A),),
            downloads=(_download("a.bin", A, base),),
            source="test",
            used_by="test",
            default=True,
        ),
        Entry(
            name="beta",
            title="b",
            files=(_target("beta/b.txt", B),),
            downloads=(_download("b.txt", B, base),),
            source="test",
            used_by="test",
            default=True,
        ),
        Entry(
            name="arch",
            title="archive",
            convert="untar",
            default=True,
            files=(_target("arch-py/x", X, md5=True), _target("arch-py/y", Y)),
            downloads=(_download("arch.tar.gz", TAR, base),),
            source="test",
            used_by="test",
        ),
        Entry(
            name="manual",
            title="by hand",
            convert=None,
            files=(Target("man/m.bin"),),
            manual="download it by hand from https://example.invalid/drive",
            source="test",
            used_by="test",
        ),
    )


REG = _registry()


class Server:
    """Serves ``files`` on 127.0.0.1 with Range support; logs (name, Range header) per GET.

    ``truncate[name] = n``: the next response for ``name`` announces the full length but sends
    only ``n`` bytes and closes the connection. ``ignore_range``: answer 200 with the whole file.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files, self.log, self.truncate, self.ignore_range = dict(files), [], {}, False
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = urllib.parse.unquote(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                srv.log.append((name, rng))
                if name not in srv.files:
                    self.send_error(404)
                    return
                data, start = srv.files[name], 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not srv.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = srv.truncate.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def requests(self, name: str) -> list[str | None]:
        return [r for n, r in self.log if n == name]


@pytest.fixture
def server():
    s = Server(SERVED)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _fetch(names, root, mirror, **kw):
    kw.setdefault("registry", REG)
    return F.fetch(names, root, mirror=mirror, progress=False, backoff=0.0, log=lambda line: None, **kw)


# --------------------------------------------------------------------------- fetch
def test_full_fetch_verifies_converts_and_cleans_up(server, tmp_path):
    res = _fetch((), tmp_path, server.url)
    assert [(r.entry.name, r.action) for r in res] == [("alpha", "fetched"), ("beta", "fetched"), ("arch", "fetched")]
    assert (tmp_path / "alpha/a.bin").read_bytes() == A and (tmp_path / "beta/b.txt").read_bytes() == B
    assert (tmp_path / "arch-py/x").read_bytes() == X and (tmp_path / "arch-py/y").read_bytes() == Y
    # only registered members are extracted: nothing outside the data directory, no extras
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "arch-py/readme").exists()
    assert not (tmp_path / F.DOWNLOADS).exists()  # downloads removed after conversion
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.tmp"))
    assert {st.entry.name: st.state for st in F.status(tmp_path, registry=REG)} == {
        "alpha": "present",
        "beta": "present",
        "arch": "present",
        "manual": "missing",
    }
    # a second run finds everything verified and asks the server for nothing
    n = len(server.log)
    assert {r.action for r in _fetch((), tmp_path, server.url)} == {"present"}
    assert len(server.log) == n


def test_fetch_by_name_path_and_keep_downloads(server, tmp_path):
    res = _fetch(["arch-py/y", "beta"], tmp_path, server.url, keep_downloads=True)
    assert [r.entry.name for r in res] == ["arch", "beta"]
    assert (tmp_path / F.DOWNLOADS / "arch.tar.gz").read_bytes() == TAR
    assert not (tmp_path / "alpha").exists()


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    server.truncate["a.bin"] = 70_000
    _fetch(["alpha"], tmp_path, server.url)
    assert server.requests("a.bin") == [None, "bytes=70000-"]  # the second request asks for the rest
    assert (tmp_path / "alpha/a.bin").read_bytes() == A


def test_partial_download_is_kept_and_resumed_by_the_next_run(server, tmp_path):
    server.truncate["a.bin"] = 50_000
    with pytest.raises(OSError, match=r"interrupted .*50,000 of 200,000 bytes kept .*rerun to resume"):
        _fetch(["alpha"], tmp_path, server.url, retries=0)
    part = tmp_path / F.DOWNLOADS / "a.bin.part"
    assert part.read_bytes() == A[:50_000] and not (tmp_path / "alpha/a.bin").exists()
    (st,) = F.status(tmp_path, ["alpha"], registry=REG)
    assert st.state == "missing" and st.partial_bytes == 50_000
    _fetch(["alpha"], tmp_path, server.url)
    assert server.requests("a.bin")[-1] == "bytes=50000-"
    assert (tmp_path / "alpha/a.bin").read_bytes() == A and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    part = tmp_path / F.DOWNLOADS / "a.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(A[:1000])
    server.ignore_range = True
    _fetch(["alpha"], tmp_path, server.url)
    assert server.requests("a.bin") == ["bytes=1000-"]
    assert (tmp_path / "alpha/a.bin").read_bytes() == A


@pytest.mark.parametrize("bad", [bytes(len(A)), A + b"x"], ids=["same-size", "too-long"])
def test_corrupt_download_is_refused_and_not_kept(server, tmp_path, bad):
    server.files["a.bin"] = bad
    with pytest.raises(
        ValueError,
        match=r"corrupt download from http://127\.0\.0\.1:\d+/a\.bin: "
        r"(sha256 [0-9a-f]{64}, expected|more than the 200,000 bytes)",
    ):
        _fetch(["alpha"], tmp_path, server.url)
    assert not (tmp_path / "alpha/a.bin").exists()
    assert not list(tmp_path.rglob("a.bin*"))  # neither the final name nor a partial file
    server.files["a.bin"] = A  # a good copy afterwards is accepted
    _fetch(["alpha"], tmp_path, server.url)
    assert (tmp_path / "alpha/a.bin").read_bytes() == A


def test_corrupt_archive_member_is_not_written(server, tmp_path):
    reg = list(REG)
    reg[2] = Entry(
        name="arch",
        title="t",
        convert="untar",
        files=(Target("arch-py/x", len(X), "0" * 64),),
        downloads=REG[2].downloads,
        source="t",
        used_by="t",
    )
    with pytest.raises(ValueError, match="member arch-py/x of arch.tar.gz does not match the registry"):
        _fetch(["arch"], tmp_path, server.url, registry=tuple(reg))
    assert not (tmp_path / "arch-py/x").exists() and not list((tmp_path / "arch-py").iterdir())


def test_existing_corrupt_file_is_replaced(server, tmp_path):
    (tmp_path / "beta").mkdir()
    (tmp_path / "beta/b.txt").write_bytes(b"garbage")
    lines = []
    F.fetch(["beta"], tmp_path, mirror=server.url, progress=False, log=lines.append, registry=REG)
    assert (tmp_path / "beta/b.txt").read_bytes() == B
    assert any("replacing corrupt files (beta/b.txt: size 7 bytes, expected 5,000)" in s for s in lines)


def test_offline_is_one_line_naming_the_url_and_the_mirror_option(tmp_path, monkeypatch):
    monkeypatch.delenv(F.MIRROR_ENV, raising=False)
    dead = _closed_port_url()
    reg = _registry(base=dead + "/official")  # "official" URLs that refuse the connection
    with pytest.raises(OSError) as exc:
        _fetch(["alpha"], tmp_path, None, registry=reg)
    msg = str(exc.value)
    assert "\n" not in msg and f"cannot reach {dead}/official/a.bin" in msg and "--mirror URL" in msg
    assert F.MIRROR_ENV in msg and not list(tmp_path.rglob("*.bin"))
    with pytest.raises(OSError, match=re.escape(f"cannot reach {dead}/a.bin")):  # an unreachable mirror too
        _fetch(["alpha"], tmp_path, dead)


def test_cli_offline_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    from robntk.cli import main

    dead = _closed_port_url()
    monkeypatch.setenv(F.MIRROR_ENV, dead)
    assert main(["data", "fetch", "nb201-archs", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"robntk data: error: cannot reach {dead}/meta.json") and "--mirror URL" in err


def test_mirror_from_environment_and_http_errors(server, tmp_path, monkeypatch):
    monkeypatch.setenv(F.MIRROR_ENV, server.url)
    _fetch(["beta"], tmp_path, None)
    assert server.requests("b.txt") == [None]
    del server.files["a.bin"]
    with pytest.raises(OSError, match=r"cannot download http://127\.0\.0\.1:\d+/a\.bin: HTTP 404 .*--mirror URL"):
        _fetch(["alpha"], tmp_path, None)
    with pytest.raises(ValueError, match="must be an http://, https:// or file:// URL, got 'ftp://x'"):
        F.resolve_mirror("ftp://x")


def test_file_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "b.txt").write_bytes(B)
    _fetch(["beta"], tmp_path / "data", mirror.as_uri())
    assert (tmp_path / "data/beta/b.txt").read_bytes() == B


def test_names_and_unfetchable_entries():
    assert [e.name for e in F.select((), REG)] == ["alpha", "beta", "arch"]
    assert [e.name for e in F.select(["all"], REG)] == ["alpha", "beta", "arch"]
    with pytest.raises(ValueError, match=r"'manual' \(manual\) cannot be fetched automatically: download it by hand"):
        F.select(["manual"], REG)
    with pytest.raises(ValueError, match="unknown data entry 'nope'; known: alpha, beta, arch, manual"):
        F.select(["nope"], REG)
    assert S.get("cifar-10-batches-py").name == "cifar10" and S.get("./nb201_archs/meta.json").name == "nb201-archs"
    with pytest.raises(ValueError, match="cannot be fetched automatically: download the folder ImageNet16 by hand"):
        F.select(["ImageNet16"])


# --------------------------------------------------------------------------- status
def test_status_present_missing_corrupt(tmp_path, monkeypatch):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha/a.bin").write_bytes(A)
    (tmp_path / "beta").mkdir()
    (tmp_path / "beta/b.txt").write_bytes(bytes(len(B)))  # right size, wrong bytes
    (tmp_path / "arch-py").mkdir()
    (tmp_path / "arch-py/y").write_bytes(Y)  # x missing
    (tmp_path / "man").mkdir()
    (tmp_path / "man/m.bin").write_bytes(b"anything")  # no checksum known
    st = {s.entry.name: s for s in F.status(tmp_path, registry=REG)}
    assert {k: s.state for k, s in st.items()} == {
        "alpha": "present",
        "beta": "corrupt",
        "arch": "incomplete",
        "manual": "present",
    }
    assert st["beta"].files[0].detail == f"sha256 {_sha(bytes(len(B)))}, expected {_sha(B)}"
    assert st["manual"].files[0].detail == "no checksum known"
    # files over HASH_LIMIT are checked by size unless verify=True
    monkeypatch.setattr(F, "HASH_LIMIT", 1000)
    (beta,) = F.status(tmp_path, ["beta"], registry=REG)
    assert beta.state == "present" and beta.files[0].detail == "size checked (--verify hashes it)"
    (beta,) = F.status(tmp_path, ["beta"], verify=True, registry=REG)
    assert beta.state == "corrupt"


def test_cli_status(tmp_path, capsys, monkeypatch):
    from robntk.cli import main

    monkeypatch.setattr(S, "REGISTRY", REG)
    (tmp_path / "beta").mkdir()
    (tmp_path / "beta/b.txt").write_bytes(b"garbage")
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha/a.bin").write_bytes(A)
    assert main(["data", "status", "--data-dir", str(tmp_path)]) == 1  # 1: a file is corrupt
    out = capsys.readouterr().out
    assert re.search(r"^present +alpha +alpha/a\.bin \[200\.0 kB, default\]$", out, re.M)
    assert re.search(r"^corrupt +beta +beta/b\.txt", out, re.M) and "size 7 bytes, expected 5,000" in out
    assert re.search(r"^missing +arch +arch-py/ \(2 files\)", out, re.M)
    assert "from https://example.invalid/files/arch.tar.gz, converted (untar)" in out
    assert "manual: download it by hand from https://example.invalid/drive" in out
    # --data-dir before the sub-command works too; a clean directory exits 0
    (tmp_path / "beta/b.txt").write_bytes(B)
    assert main(["data", "--data-dir", str(tmp_path), "status", "alpha", "beta"]) == 0
    assert "2 present." in capsys.readouterr().out


def test_data_directory_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data here (tests/test_data_download.py covers ./data)
    monkeypatch.delenv("ROBNTK_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert F.resolve_data_dir() == (tmp_path / "xdg" / "robntk", "the user data directory")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert F.resolve_data_dir()[0] == Path.home() / ".local/share/robntk"
    monkeypatch.setenv("ROBNTK_DATA", str(tmp_path / "env"))
    assert F.resolve_data_dir() == (tmp_path / "env", "$ROBNTK_DATA")
    assert F.resolve_data_dir(tmp_path / "x") == (tmp_path / "x", "--data-dir")


# --------------------------------------------------------------------------- the real registry
def test_registry_is_consistent():
    S.check_registry()
    for e in S.REGISTRY:
        assert e.files and e.title and e.source and e.used_by, e.name
        assert all(d.url.startswith("https://") and len(d.sha256) == 64 for d in e.downloads), e.name
        assert all(t.checked for t in e.files) or not e.fetchable, e.name
    defaults = {e.name for e in S.default_entries()}
    assert defaults == {"nb201-archs", "nasrobbench201", "nb201-acc", "jung", "suite-zero", "cifar10"}
    with pytest.raises(ValueError, match="mirror file names used twice"):
        S.check_registry(
            REG
            + (
                Entry(
                    name="dup",
                    title="t",
                    files=(_target("d/a.bin", A),),
                    downloads=(_download("a.bin", A),),
                    source="t",
                    used_by="t",
                ),
            )
        )


def test_registry_checksums_match_the_reference_data(data_dir):
    """Every registered file that the reference directory holds has the registry's size and digest."""
    checked = 0
    for e in S.REGISTRY:
        for t in e.files:
            p = data_dir / t.path
            if not p.is_file() or not t.checked:
                continue
            assert F.check_file(p, t) is None, t.path
            checked += 1
    assert checked >= 14  # the reference bundle's files (CIFAR batches and ImageNet16 are not in it)


def test_derivations_reproduce_the_reference_files(data_dir):
    """Each derived CSV is re-created byte for byte from the verbatim files of the reference data
    (suite-zero's inputs are downloads that the reference bundle does not hold)."""
    pytest.importorskip("pandas")
    for e in S.REGISTRY:
        if e.convert not in C.DERIVATIONS or e.downloads:
            continue
        if not all((data_dir / t.path).is_file() for n in e.needs for t in S.ENTRIES[n].files):
            pytest.skip(f"inputs of {e.name} not in {data_dir}")
        data = C.DERIVATIONS[e.convert](data_dir, [])
        (t,) = e.files
        assert (len(data), _sha(data)) == (t.size, t.sha256), e.name
