"""`.shuff` files from Python (save_file / load_file / safe_open) on real checkpoints, and the
bindings' refusals of aliasing buffers; the format itself is tested in crates/shuff-container."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file as st_load

import shuff
from conftest import SAMPLE, WHISPER


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(shuff.byte_view(a), shuff.byte_view(b))


@pytest.mark.parametrize("path", [WHISPER, SAMPLE / "step004.safetensors"], ids=["whisper", "minilm"])
def test_real_checkpoints_round_trip_bit_exactly(tmp_path, path):
    original = st_load(str(path))
    packed = tmp_path / "model.shuff"
    shuff.save_file(original, packed, metadata={"source": path.name})
    assert packed.stat().st_size < 0.9 * path.stat().st_size
    back = shuff.load_file(packed)
    assert list(back) == list(original)
    for name, t in original.items():
        assert same_bits(back[name], t), name
    with shuff.safe_open(packed, framework="pt") as f:
        assert f.metadata() == {"source": path.name}
        name = sorted(f.keys())[len(original) // 2]
        assert same_bits(f.get_tensor(name), original[name])
        with pytest.raises(shuff.ShuffError, match="no tensor named"):
            f.get_tensor("nope")


def test_a_trained_book_codes_and_travels_with_the_file(tmp_path, steps):
    tr = shuff.Trainer()
    for b, s in enumerate(steps[:4]):
        for name, t in s.items():
            if "ffn1_act.x" in name:
                tr.add("act", "bf16", "exponent", b, shuff.byte_view(t))
    book = tr.build("acts")
    acts = {k: v for k, v in steps[4].items() if "ffn1_act.x" in k}
    shuff.save_file(acts, tmp_path / "a.shuff", book=book)
    back = shuff.load_file(tmp_path / "a.shuff")
    assert all(same_bits(back[k], v) for k, v in acts.items())


def test_numpy_arrays_of_every_plain_dtype(tmp_path):
    rng = np.random.default_rng(7)
    arrays = {
        "f32": rng.standard_normal((64, 33)).astype(np.float32),
        "f16": rng.standard_normal(1000).astype(np.float16),
        "i64": np.arange(300, dtype=np.int64),
        "u8": rng.integers(0, 9, 5000).astype(np.uint8),
        "bool": rng.random(17) > 0.5,
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.array(3.5, np.float64),
        "fortran": np.asfortranarray(rng.standard_normal((20, 30)).astype(np.float32)),
    }
    shuff.save_file(arrays, tmp_path / "np.shuff")
    with shuff.safe_open(tmp_path / "np.shuff", framework="np") as f:
        for k, a in arrays.items():
            b = f.get_tensor(k)
            assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b), k


def test_damaged_files_raise_shuff_error(tmp_path, whisper):
    packed = tmp_path / "w.shuff"
    shuff.save_file(whisper, packed)
    data = bytearray(packed.read_bytes())
    for pos in (20, len(data) // 2, len(data) - 10):
        data[pos] ^= 0x10
        (tmp_path / "bad.shuff").write_bytes(bytes(data))
        with pytest.raises(shuff.ShuffError):
            shuff.load_file(tmp_path / "bad.shuff")
        data[pos] ^= 0x10
    with pytest.raises(shuff.ShuffError, match="not a shuff container"):
        shuff.load_file(WHISPER)


def test_buffers_that_overlap_are_refused(steps):
    x = steps[4]["layer1.ffn1_act.x.shard0"]
    tr = shuff.Trainer()
    tr.add("c", "bf16", "bytes", 0, shuff.byte_view(x))
    book = tr.build("t").codebook("c")
    frame = shuff.encode_frame(x, book)
    n = x.numel() * 2
    shared = np.zeros(len(frame) + n, np.uint8)
    shared[: len(frame)] = np.frombuffer(frame, np.uint8)
    with pytest.raises(shuff.ShuffError, match="overlaps"):
        shuff._shuff.decode_into_buffer(shared[: len(frame)], book, shared[len(frame) - 8 : len(frame) - 8 + n])
    shuff._shuff.decode_into_buffer(shared[: len(frame)], book, shared[len(frame) :])  # adjacent is fine
    assert np.array_equal(shared[len(frame) :], shuff.byte_view(x))
    buf = np.zeros(shuff._shuff.max_frame_size("bf16", "bytes", x.numel() * 2) + x.numel() * 2, np.uint8)
    buf[: x.numel() * 2] = shuff.byte_view(x)
    with pytest.raises(shuff.ShuffError, match="overlaps"):
        shuff._shuff.encode_into_buffer(buf[: x.numel() * 2], book, buf[100:])


def test_strided_outputs_are_decoded_into(steps):
    x = steps[4]["layer1.ffn1_act.x.shard0"].float()
    tr = shuff.Trainer()
    tr.add("c", "f32", "exponent", 0, shuff.byte_view(x))
    book = tr.build("t").codebook("c")
    frame = shuff.encode_frame(x, book)
    out_t = torch.empty(x.shape[::-1]).t()  # a transposed (non-contiguous) view
    assert not out_t.is_contiguous()
    shuff.decode_frame_into(frame, book, out_t)
    assert torch.equal(out_t, x)
    out_np = np.asfortranarray(np.zeros(tuple(x.shape), np.float32))
    shuff.decode_frame_into(frame, book, out_np)
    assert np.array_equal(out_np, x.numpy())


def test_hostile_messages_and_sizes_raise_shuff_error(steps):
    x = steps[4]["layer1.ffn1_act.x.shard0"]
    tr = shuff.Trainer()
    tr.add("c", "bf16", "bytes", 0, shuff.byte_view(x))
    book = tr.build("t")
    msg = bytearray(shuff.encode(x, book, "c"))
    # A shape claiming 2^40 × 2^20 elements: refused before allocating, as a ShuffError.
    import struct

    bad = msg[:8] + struct.pack("<2Q", 1 << 40, 1 << 20) + msg[8 + 16 :]
    with pytest.raises(shuff.ShuffError, match="elements"):
        shuff.decode(bytes(bad), book, "c")
    with pytest.raises(shuff.ShuffError):
        shuff.decode(bytes(msg[:10]), book, "c")
    with pytest.raises(shuff.ShuffError):
        shuff._shuff.max_frame_size("bf16", "bytes", 2**64 - 1)


def test_the_cli_and_python_train_identical_codebooks(tmp_path, steps):
    """One trainer, one default per layout (12 bits for bytes, 16 for exponent): `shuff train` and
    `shuff.Trainer` give the same code from the same tensors."""
    import subprocess

    from conftest import REPO

    cli = REPO / "target" / "release" / "shuff"
    assert cli.exists(), "build the CLI first: cargo build --release -p shuff-cli (scripts/test-all does)"
    files = [str(SAMPLE / f"step{s:03d}.safetensors") for s in range(4)]
    for layout in ("bytes", "exponent"):
        out = tmp_path / f"{layout}.json"
        subprocess.run([str(cli), "train", "--layout", layout, "--class", "act", "--match", r"ffn1_act\.x", "-o", str(out), *files],
                       check=True, capture_output=True)
        tr = shuff.Trainer()
        for b, s in enumerate(steps[:4]):
            for name, t in s.items():
                if "ffn1_act.x" in name:
                    tr.add("act", "bf16", layout, b, shuff.byte_view(t))
        mine, theirs = tr.build("p").codebook("act"), shuff.CodebookSet.load(out).codebook("act")
        assert mine.fingerprint == theirs.fingerprint, layout
        assert max(max(s) for s in mine.lengths()) <= (12 if layout == "bytes" else 16)


def test_trainer_takes_tensors_and_arrays(steps):
    explicit, easy = shuff.Trainer(), shuff.Trainer()
    for b, s in enumerate(steps[:4]):
        t = s["layer1.ffn1_act.x.shard0"]
        explicit.add("a", "bf16", "exponent", b, shuff.byte_view(t))
        easy.add("a", t, batch=b, layout="exponent")
        easy.add("f", t.float().numpy(), batch=b)  # a numpy array, default layout
    assert easy.build("x").codebook("a").fingerprint == explicit.build("x").codebook("a").fingerprint
    f = easy.build("x").codebook("f")
    assert (f.dtype, f.layout) == ("f32", "bytes")


def test_a_frame_written_during_decode_gives_shuff_error_or_the_right_bytes(steps):
    """Another thread flipping bytes of the frame while it is decoded: the decoder works on a copy,
    so each call sees one consistent frame — the right tensor, or a ShuffError (never a
    PanicException or other BaseException)."""
    import threading

    x = steps[4]["layer1.ffn1_act.x.shard0"]
    tr = shuff.Trainer()
    tr.add("c", x, layout="exponent")
    book = tr.build("t").codebook("c")
    frame = bytearray(shuff.encode_frame(x, book, checksum=True))
    pristine = bytes(frame)
    stop = threading.Event()

    def vandal():
        i = 0
        while not stop.is_set():
            pos = 30 + (i * 7919) % (len(frame) - 30)
            frame[pos] ^= 0x55
            frame[pos] ^= 0x55
            i += 1

    t = threading.Thread(target=vandal)
    t.start()
    try:
        out = torch.empty_like(x)
        ok = errors = 0
        for _ in range(200):
            try:
                shuff.decode_frame_into(frame, book, out)
                assert same_bits(out, x)
                ok += 1
            except shuff.ShuffError:
                errors += 1
    finally:
        stop.set()
        t.join()
    assert ok + errors == 200 and ok > 0
    assert bytes(frame) == pristine


def test_overlapping_selectors_take_the_first_class_given_everywhere(tmp_path):
    """The class-order bug: a catch-all class that sorts first by name must not capture the tensors
    of a more specific class given before it — not in a set `shuff train` wrote, not in
    `shuff.ClassSelector`, not in the Profiler (all three are the library's one policy)."""
    import subprocess


    import shuff.torch
    from conftest import REPO

    cli = REPO / "target" / "release" / "shuff"
    assert cli.exists(), "build the CLI first: cargo build --release -p shuff-cli (scripts/test-all does)"
    out = tmp_path / "set.json"
    subprocess.run([str(cli), "train", "--family", "none", "--class", "z_ffn1", "--match", r"ffn1_act\.x", "--class", "a_all", "--match", ".",
                    "-o", str(out), str(SAMPLE / "step000.safetensors")], check=True, capture_output=True)
    book = shuff.CodebookSet.load(out)
    assert book.class_of("layer1.ffn1_act.x.shard0") == "z_ffn1"
    assert book.class_of("layer1.weight.ffn1.shard0") == "a_all"
    sel = shuff.ClassSelector([("z_ffn1", r"ffn1_act\.x"), ("a_all", ".")])
    assert sel.class_of("layer1.ffn1_act.x.shard0") == "z_ffn1" and sel.class_of("anything") == "a_all"
    assert shuff.ClassSelector([("a_all", "."), ("z_ffn1", r"ffn1_act\.x")]).class_of("layer1.ffn1_act.x.shard0") == "a_all"
    assert shuff.ClassSelector([("some", "x")]).class_of("y") is None
    with pytest.raises(shuff.ShuffError, match="not a valid regex"):
        shuff.ClassSelector([("bad", "(")])
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    prof = shuff.torch.Profiler(model, classes={"z_last": r"^2$", "a_all": "."}, layouts=("bytes",))
    assert prof.modules == {"0": "a_all", "1": "a_all", "2": "z_last"}
    prof.remove()
    # Given the other way round, the catch-all takes everything and the specific class matches
    # nothing, which is an error that names the modules.
    with pytest.raises(ValueError, match=r"\['z_last'\] match no module"):
        shuff.torch.Profiler(model, classes={"a_all": ".", "z_last": r"^2$"}, layouts=("bytes",))
