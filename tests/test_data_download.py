"""Where the readers look for data (robntk.core.paths), what their missing-file errors say, and
``--download`` (robntk.data.fetch.download_missing / the CLI flag).

Downloads come from the loopback HTTP server of tests/test_data_fetch.py (a thread of this
process); an autouse fixture refuses every connection and name lookup that is not the loopback
address, so nothing leaves the machine. The default data directories are redirected into
``tmp_path`` (working directory, ``$XDG_DATA_HOME``), so ``~/.local/share`` is never touched.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import socket
import tarfile

import numpy as np
import pytest
from test_data_fetch import REG, Server
from test_data_fetch import B as B_BYTES

from robntk.cli import build_parser, main
from robntk.core import paths
from robntk.data import benchmark as B
from robntk.data import datasets as D
from robntk.data import fetch as F
from robntk.data import jung as J
from robntk.data import sources as S
from robntk.data import suite_zero as Z
from robntk.data.entry import Download, Entry, Target
from robntk.nb201.searchspace import SearchSpace

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any connection or DNS lookup that would leave the machine."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise AssertionError(f"test tried to reach {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kw):
        if host not in _LOOPBACK and host is not None:
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A working directory without ./data, the user data directory under tmp_path, no
    $ROBNTK_DATA / $ROBNTK_DATA_MIRROR."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.delenv(F.MIRROR_ENV, raising=False)
    return tmp_path


def _serve(files):
    return Server(files)


def _stop(srv):
    srv.httpd.shutdown()
    srv.httpd.server_close()


# --------------------------------------------------------------------------- where
def test_the_network_guard_is_on():
    with pytest.raises(AssertionError, match="tried to resolve 'example.invalid'"):
        socket.getaddrinfo("example.invalid", 443)
    with socket.socket() as sock, pytest.raises(AssertionError, match="tried to reach"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1 (RFC 5737)


def test_data_dir_fallback_order(home, monkeypatch):
    user = home / "xdg" / "robntk"
    assert paths.user_data_dir() == user and F.user_data_dir is paths.user_data_dir
    # 4. nothing else: the user data directory
    assert paths.resolve_data_dir() == (user, paths.HOW_USER) and paths.data_dir() == user
    # 3. ./data once it exists (a file called data does not count)
    (home / "work" / "data").write_text("not a directory")
    assert paths.data_dir() == user
    (home / "work" / "data").unlink()
    (home / "work" / "data").mkdir()
    assert paths.resolve_data_dir() == (paths.DEFAULT_DATA_DIR, paths.HOW_CWD)
    # 2. $ROBNTK_DATA over ./data
    monkeypatch.setenv(paths.DATA_ENV, str(home / "env"))
    assert paths.resolve_data_dir() == (home / "env", paths.HOW_ENV)
    # 1. an explicit directory over everything
    assert paths.resolve_data_dir(home / "x") == (home / "x", paths.HOW_FLAG)
    # robntk data status|fetch resolve the same way
    assert F.resolve_data_dir is paths.resolve_data_dir
    monkeypatch.delenv(paths.DATA_ENV)
    assert F.resolve_data_dir()[0] == paths.data_dir() == paths.DEFAULT_DATA_DIR


def test_plain_data_fetch_is_found_by_the_readers(home, monkeypatch, capsys):
    """``robntk data fetch`` without --data-dir writes where data_file then looks."""
    monkeypatch.setattr(S, "REGISTRY", REG)
    srv = _serve({"b.txt": B_BYTES})
    try:
        assert main(["data", "fetch", "beta", "--mirror", srv.url]) == 0
    finally:
        _stop(srv)
    out = capsys.readouterr().out
    user = home / "xdg" / "robntk"
    assert f"data directory: {user} (the user data directory)" in out and "note:" not in out
    assert paths.data_file("beta/b.txt") == user / "beta/b.txt"
    assert (user / "beta/b.txt").read_bytes() == B_BYTES


def test_data_dir_hiding_the_user_directory_is_named(home, monkeypatch):
    monkeypatch.setattr(S, "REGISTRY", REG)
    (home / "xdg" / "robntk" / "beta").mkdir(parents=True)
    (home / "xdg" / "robntk" / "beta" / "b.txt").write_bytes(B_BYTES)
    (home / "work" / "data").mkdir()
    with pytest.raises(FileNotFoundError) as exc:
        paths.data_file("beta/b.txt")
    msg = str(exc.value)
    assert "(data directory data, ./data of the working directory; the user data directory" in msg
    assert "read only when ./data does not exist" in msg


# --------------------------------------------------------------------------- messages
#: reader → the registry entry its missing-file message names
READERS = {
    "benchmark": (lambda d: B.RobBench.load(d), "nasrobbench201"),
    "benchmark-html": (lambda d: B.RobBench.from_html_json(d / B.HTML_FILE), "nasrobbench201"),
    "nb201-acc": (lambda d: B.load_nb201_accuracy(d), "nb201-acc"),
    "cifar10": (lambda d: D.load_cifar10("test", d), "cifar10"),
    "cifar10-train-full": (lambda d: D.load_cifar10("train", d, allow_subset=False), "cifar10"),
    "cifar100": (lambda d: D.load_cifar100("train", d), "cifar100"),
    "arch-list": (lambda d: SearchSpace.load(d), "nb201-archs"),
    "jung": (lambda d: J.load_jung_robustness(d), "jung"),
    "suite-zero": (lambda d: Z.load_suite_zero("cifar10", d), "suite-zero"),
}


@pytest.mark.parametrize("reader", READERS)
def test_missing_file_names_its_fetch_command(tmp_path, reader):
    load, name = READERS[reader]
    with pytest.raises(FileNotFoundError) as exc:
        load(tmp_path)
    msg = str(exc.value)
    assert f"`robntk data fetch {name} --data-dir {tmp_path}`" in msg, msg
    # an explicitly given file (from_html_json) is not what --download fetches: not offered there
    assert ("rerun with --download" in msg) == (reader != "benchmark-html") and "\n" not in msg
    assert S.ENTRIES[name].source.rstrip(".") in msg  # the source, from the registry too


def test_missing_file_names_are_derived_from_the_registry():
    """Each reader's file maps to its entry by path (robntk.data.sources.find), not by hand."""
    for rel, name in [
        (B.HTML_FILE, "nasrobbench201"),
        (B.CSV_FILE, "nasrobbench201-csv"),
        (B.NB201_ACC_FILE, "nb201-acc"),
        ("nb201_archs/meta.json", "nb201-archs"),
        (J.JUNG_JSON, "jung"),
        (Z.SUITE_ZERO_FILE, "suite-zero"),
        ("cifar-10-batches-py", "cifar10"),
        ("cifar-10-batches-py/test_batch", "cifar10"),
        ("./cifar-100-python/train", "cifar100"),
        ("ImageNet16/val_data", "imagenet16"),
    ]:
        assert S.find(rel).name == name, rel
    assert S.find("nowhere/x.bin") is None and S.find("../nb201_archs/meta.json") is None
    assert "Obtain it from the robntk reference data bundle" in paths.obtain_hint("nowhere/x.bin")


def test_missing_file_via_the_default_directory_needs_no_data_dir_flag(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(
            f"(data directory {tmp_path}, from $ROBNTK_DATA). Obtain it from the official source: "
            "`robntk data fetch nb201-archs` downloads and verifies it"
        ),
    ):
        SearchSpace.load()


def test_unfetchable_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        D.load_imagenet16("train", tmp_path)
    msg = str(exc.value)
    assert "robntk data files not found" in msg and "ImageNet16/train_data_batch_10" in msg
    assert "`robntk data fetch` cannot fetch them (nor can --download): download the folder ImageNet16 by hand" in msg
    with pytest.raises(FileNotFoundError, match="cannot fetch it .*fetch `cifar10` instead"):
        D.load_cifar10("test", tmp_path, source="npz")


def test_cli_missing_file_is_one_line_naming_fetch_and_download(tmp_path, capsys):
    code = main(
        [
            "search",
            "--data-dir",
            str(tmp_path),
            "--methods",
            "random",
            "--budget",
            "5",
            "--seeds",
            "1",
            "--no-figure",
            "--no-progress",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("robntk search: error: robntk data file not found")
    assert f"`robntk data fetch nasrobbench201 --data-dir {tmp_path}`" in err and "--download" in err


# --------------------------------------------------------------------------- --download
def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _cifar_registry(base: str):
    """A registry whose ``cifar10`` entry is a tiny archive laid out like cifar-10-python.tar.gz."""
    rng = np.random.default_rng(0)
    members, arrays = {}, {}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, 4).tolist()
        members[f"cifar-10-batches-py/{f}"] = _pickle({b"data": x, b"labels": y})
        arrays[f] = (x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    entry = Entry(
        name="cifar10",
        title="t",
        convert="untar",
        source="test",
        used_by="test",
        files=tuple(Target(n, len(b), hashlib.sha256(b).hexdigest()) for n, b in members.items()),
        downloads=(Download(f"{base}/cifar-10-python.tar.gz", len(archive), hashlib.sha256(archive).hexdigest()),),
    )
    return (entry,), {"cifar-10-python.tar.gz": archive}, arrays


def test_download_missing_fetches_and_the_reader_goes_on(tmp_path, monkeypatch):
    reg, served, arrays = _cifar_registry("https://example.invalid/kriz")
    monkeypatch.setattr(S, "REGISTRY", reg)
    srv = _serve(served)
    lines = []
    try:
        assert not paths.download_enabled()
        with F.download_missing(mirror=srv.url, progress=False, log=lines.append):
            assert paths.download_enabled()
            x, y = D.load_cifar10("test", tmp_path)
            assert len(srv.log) == 1
            D.load_cifar10("train", tmp_path)  # present now: no second download
            assert len(srv.log) == 1
    finally:
        _stop(srv)
    assert not paths.download_enabled()  # restored after the block
    np.testing.assert_array_equal(x, arrays["test_batch"][0])
    assert y.tolist() == arrays["test_batch"][1]
    assert lines[0] == (f"--download: cifar-10-batches-py/test_batch missing in {tmp_path}; fetching cifar10")
    assert not (tmp_path / F.DOWNLOADS).exists()


def test_download_leaves_unfetchable_files_to_the_message(tmp_path):
    with F.download_missing(mirror="http://127.0.0.1:9", progress=False, log=lambda s: None):
        with pytest.raises(FileNotFoundError, match="cannot fetch it .*download the folder ImageNet16 by hand"):
            D.load_imagenet16("val", tmp_path)
        assert F.fetch_missing(["nowhere/x.bin", "ImageNet16/val_data"], tmp_path) == []


def test_cli_download_flag_installs_the_fetcher(home, monkeypatch, capsys):
    """--download on any command (and after a command's own sub-command): a missing file is fetched
    from the mirror into the data directory and the command goes on; without it, the command fails."""
    import robntk.commands.search as search_cmd

    monkeypatch.setattr(S, "REGISTRY", REG)
    seen = []

    def run(args):
        seen.append(paths.data_file("beta/b.txt", args.data_dir).read_bytes())
        return 0

    monkeypatch.setattr(search_cmd, "run", run)
    srv = _serve({"b.txt": B_BYTES})
    monkeypatch.setenv(F.MIRROR_ENV, srv.url)
    try:
        assert main(["search"]) == 2
        err = capsys.readouterr().err
        assert "`robntk data fetch beta`" in err and "rerun with --download" in err
        assert main(["search", "--download"]) == 0
    finally:
        _stop(srv)
    assert seen == [B_BYTES] and srv.requests("b.txt") == [None]
    assert (home / "xdg" / "robntk" / "beta" / "b.txt").read_bytes() == B_BYTES
    assert "--download: beta/b.txt missing" in capsys.readouterr().err  # the log goes to stderr
    assert not paths.download_enabled()
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    for name, sub in commands.choices.items():  # every command has the flag
        assert any(a.option_strings == ["--download"] for a in sub._actions), name
    for argv in (
        ["search", "--download"],
        ["robnets", "--download", "params"],
        ["robnets", "params", "--download"],
        ["data", "--download", "status"],
    ):
        assert parser.parse_args(argv).download is True, argv
    assert parser.parse_args(["robnets", "params"]).download is False


def test_cli_download_runs_a_real_command_on_an_empty_data_dir(data_dir, tmp_path, monkeypatch, capsys):
    """``robntk search --download`` on an empty directory fetches the benchmark and the arch list
    (real registry, files served by the loopback mirror from the reference data) and runs."""
    files = {
        "meta.json": (data_dir / "nb201_archs/meta.json").read_bytes(),
        "NAS-RobBench-201_html.json": (data_dir / B.HTML_FILE).read_bytes(),
    }
    srv = _serve(files)
    monkeypatch.setenv(F.MIRROR_ENV, srv.url)
    empty = tmp_path / "d"
    argv = [
        "search",
        "--data-dir",
        str(empty),
        "--methods",
        "random",
        "--criteria",
        "clean",
        "--budget",
        "20",
        "--seeds",
        "2",
        "--no-figure",
        "--no-progress",
        "--out",
        str(tmp_path / "out"),
    ]
    try:
        assert main(argv) == 2 and "--download" in capsys.readouterr().err
        assert main(argv + ["--download"]) == 0, capsys.readouterr().err
    finally:
        _stop(srv)
    assert sorted(n for n, _ in srv.log) == ["NAS-RobBench-201_html.json", "meta.json"]
    assert (tmp_path / "out" / "curves.csv").is_file()
    for rel in ("nb201_archs/meta.json", B.HTML_FILE):
        assert (empty / rel).read_bytes() == (data_dir / rel).read_bytes()
    assert main(argv) == 0  # the files are there now: no flag, no server needed
