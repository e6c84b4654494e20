"""Search space: arch strings, op codes, official order, isomorphism (vs the official map)."""

import csv
import json

import pytest

from robntk.nb201 import searchspace as ss


def test_official_order_roundtrip(space, data_dir):
    rows = list(csv.DictReader(open(data_dir / "nb201_archs" / "nb201_archs_15625.csv")))
    assert len(space) == ss.NUM_ARCHS == len(rows)
    for i, r in enumerate(rows):
        ops = ss.parse_arch_str(r["arch_str"])
        assert ss.format_arch_str(ops) == r["arch_str"] == space.arch_str(i)
        assert ss.ops_to_code(ops) == r["ops_code"]
        assert ss.code_to_ops(r["ops_code"]) == ops
        assert space.index_of(ops) == i
    assert space.arch_str(0) == (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    )
    assert (
        space.resolve("|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
        == 2581
    )
    # the 15,625 cells are exactly the 5^6 op combinations
    assert set(map(tuple, map(ss.parse_arch_str, space.arch_strs))) == set(ss.all_archs_lexicographic())


def test_isomorphism_reproduces_official_map(space, data_dir):
    computed = space.computed_isomorph()
    assert computed == list(space.isomorph)
    assert len(set(computed)) == ss.NUM_UNIQUE == 6466
    ids = [int(t) for t in open(data_dir / "nb201_archs" / "NasBenchID_6466_idx.txt").read().split()]
    assert tuple(sorted(ids)) == space.representatives


def test_canonical_form_semantics():
    # commutative sums: node3 = conv3(x) + conv1(node1 = x) vs conv1(x) + conv3(node1 = x)
    c = ("skip_connect", "none", "none", "nor_conv_3x3", "nor_conv_1x1", "none")
    d = ("skip_connect", "none", "none", "nor_conv_1x1", "nor_conv_3x3", "none")
    assert ss.canonical_form(c) == ss.canonical_form(d)
    # the reference convention does not re-associate a sum forwarded by a skip: these compute the
    # same function (pool(x) + conv3(x)) but are different classes in the official map
    c = ("skip_connect", "nor_conv_3x3", "none", "avg_pool_3x3", "none", "skip_connect")
    d = ("skip_connect", "avg_pool_3x3", "none", "nor_conv_3x3", "none", "skip_connect")
    assert ss.canonical_form(c) != ss.canonical_form(d)
    # a dead node (all-none inputs) makes its outgoing parametric ops zero
    e = ("none", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "none", "none")
    f = ("none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "none", "none")
    assert ss.canonical_form(e) == ss.canonical_form(f)
    # different ops on the only path: different classes
    path = lambda op: (op, "none", "none", "none", "skip_connect", "none")  # x -op-> node1 -skip-> out
    assert ss.canonical_form(path("nor_conv_3x3")) != ss.canonical_form(path("nor_conv_1x1"))


def test_disconnected(space):
    reps = [i for i in space.representatives if not ss.is_connected(space.arch_str(i))]
    assert reps == list(ss.DISCONNECTED_REPRESENTATIVES)
    n_disc = sum(not ss.is_connected(s) for s in space.arch_strs)
    assert n_disc == 225 + 4 * 29
    assert ss.is_connected(space.arch_str(2581)) and not ss.is_connected(space.arch_str(10))


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 node groups"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must be 'op~0'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "2 incoming"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "delimited"),
    ],
)
def test_bad_arch_strings(bad, msg):
    with pytest.raises(ValueError, match=msg):
        ss.parse_arch_str(bad)


def test_bad_indices_and_codes(space):
    for bad in (-1, 15625, "abc", 3.5, None):
        with pytest.raises(ValueError, match="NB201 index"):
            space.check_index(bad)
    assert space.check_index("42") == 42
    with pytest.raises(ValueError, match="6 digits"):
        ss.code_to_ops("4212")
    with pytest.raises(ValueError, match="6 edges"):
        ss.format_arch_str(("none",) * 5)


def test_num_cell_params():
    a = ss.parse_arch_str(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    C = 16
    assert ss.num_cell_params(a, C) == 4 * (9 * C * C + 2 * C) + (C * C + 2 * C)


def test_sample_indices(space):
    s = ss.sample_indices(space, 50, seed=3)
    assert s == ss.sample_indices(space, 50, seed=3) and len(set(s)) == 50
    assert all(space.representative(i) == i for i in s)
    with pytest.raises(ValueError, match="sample size"):
        ss.sample_indices(space, 7000, 0)


def test_corrupt_meta(tmp_path):
    (tmp_path / "nb201_archs").mkdir()
    (tmp_path / "nb201_archs" / "meta.json").write_text(json.dumps({"ids": {"0": {}}}))
    with pytest.raises(ValueError, match="corrupt NB201 meta"):
        ss.SearchSpace.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        ss.SearchSpace.load(tmp_path / "nowhere")


def test_meta_isomorph_out_of_range_is_corrupt(tmp_path, data_dir):
    meta = json.loads((data_dir / "nb201_archs" / "meta.json").read_text())
    meta["ids"]["20"]["isomorph"] = 15625
    (tmp_path / "nb201_archs").mkdir()
    (tmp_path / "nb201_archs" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cell 20 has isomorph 15625"):
        ss.SearchSpace.load(tmp_path)


def test_resolve_messages(space):
    a = space.arch_str(2581)
    assert space.resolve(a) == space.resolve("2581") == space.resolve(2581) == space.resolve(space.ops(2581)) == 2581
    for bad, msg in (
        ("", "empty architecture"),
        ("  ", "empty architecture"),
        ("conv3x3", "neither"),
        ("-3", "out of range"),
        ("15625", "out of range"),
    ):
        with pytest.raises(ValueError, match=msg):
            space.resolve(bad)
