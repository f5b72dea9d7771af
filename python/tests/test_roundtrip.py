"""Round trips of real tensors through the Python API, for every dtype and layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import shuff

LAYOUTS = ["bytes", "planes", "exponent"]


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.float().clamp(-400, 400).to(dtype) if dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else t.to(dtype)


def train(tensors, layout: str, cls: str = "c") -> shuff.CodebookSet:
    tr = shuff.Trainer()
    for batch, t in enumerate(tensors):
        tr.add(cls, shuff.dtype_name(t), layout, batch, shuff.byte_view(t))
    return tr.build("test")


def same_bits(a, b) -> bool:
    return np.array_equal(shuff.byte_view(a), shuff.byte_view(b))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn, torch.float8_e5m2])
def test_real_activations_round_trip(steps, dtype, layout):
    pick = lambda s: torch.cat([s[f"layer1.ffn1_act.x.shard{k}"] for k in range(8)], dim=1)  # noqa: E731
    book = train([as_dtype(pick(s), dtype) for s in steps[:4]], layout)
    x = as_dtype(pick(steps[4]), dtype)
    msg = shuff.encode(x, book, "c")
    assert len(msg) < x.numel() * x.element_size() or dtype in (torch.float8_e4m3fn,)
    y = shuff.decode(msg, book, "c")
    assert isinstance(y, torch.Tensor) and y.dtype == dtype and y.shape == x.shape
    assert same_bits(x, y)
    # Into a caller's buffer, and with a checksum.
    out = torch.empty_like(x)
    assert shuff.decode(shuff.encode(x, book, "c", checksum=True), book, "c", out=out) is out
    assert same_bits(x, out)


def test_whisper_f16_and_numpy_arrays(whisper):
    names = sorted(whisper)
    arrays = [whisper[n].numpy() for n in names]
    assert arrays[0].dtype == np.float16
    book = train(arrays[:-1], "exponent", "w")
    last = arrays[-1]
    back = shuff.decode(shuff.encode(last, book, "w"), book, "w")
    assert isinstance(back, np.ndarray) and back.dtype == np.float16 and back.shape == last.shape
    assert np.array_equal(back.view(np.uint16), last.view(np.uint16))
    # uint8 data and a strided (non-contiguous) input.
    u8 = np.frombuffer(last.tobytes(), dtype=np.uint8).reshape(-1, 2)[:, 1]
    b8 = train([u8], "bytes", "u")
    assert np.array_equal(shuff.decode(shuff.encode(u8, b8, "u"), b8, "u"), u8)


def test_bad_input_raises_shuff_error(steps):
    x = steps[4]["layer1.ffn1_act.x.shard0"]
    book = train([steps[0]["layer1.ffn1_act.x.shard0"]], "bytes")
    other = train([steps[0]["layer4.ffn1_act_grad.x.shard0"]], "bytes")
    msg = shuff.encode(x, book, "c")
    with pytest.raises(shuff.ShuffError, match="codebook"):
        shuff.decode(msg, other, "c")
    with pytest.raises(shuff.ShuffError):
        shuff.decode(msg[: len(msg) // 2], book, "c")
    damaged = bytearray(msg)
    damaged[len(msg) // 2] ^= 0x10
    try:  # without a checksum, a flip in raw bytes decodes (to other bits); never anything worse
        y = shuff.decode(bytes(damaged), book, "c")
        assert y.shape == x.shape and y.dtype == x.dtype
    except shuff.ShuffError:
        pass
    with pytest.raises(shuff.ShuffError, match="checksum"):
        c = bytearray(shuff.encode(x, book, "c", checksum=True))
        c[-3] ^= 0x01
        shuff.decode(bytes(c), book, "c")
    with pytest.raises(shuff.ShuffError, match="codes bf16"):
        shuff.encode(x.float(), book, "c")
    with pytest.raises(shuff.ShuffError, match="not in the codebook set"):
        shuff.encode(x, book, "nope")
    with pytest.raises(shuff.ShuffError, match="not coded"):
        shuff.encode(torch.zeros(3, dtype=torch.int64), book, "c")


def test_codebook_sets_save_and_load(tmp_path, steps):
    book = train([steps[0]["layer1.weight.ffn1.shard0"]], "exponent", "weight")
    for name in ("book.json", "book.bin"):
        book.save(tmp_path / name)
        again = shuff.CodebookSet.load(tmp_path / name)
        assert again.fingerprint == book.fingerprint and again.classes() == ["weight"]
    assert book.codebook("weight").layout == "exponent"


def test_measure_matches_the_paper_quantities(steps):
    tensors = [torch.cat([s[f"layer4.ffn1_act.x.shard{k}"] for k in range(8)], 1) for s in steps]
    book = train(tensors[:4], "bytes")
    m = shuff.measure(tensors[4], book, "c")
    assert m["shannon"] > m["huffman"] > m["fixed"] > 15.0


def test_coding_releases_the_gil(steps):
    """While one thread is inside the extension's encode/decode, another thread gets to run Python.

    No clock: with the interpreter's switch interval made huge, a thread holding the GIL keeps it
    until it blocks or releases it. The worker signals, then makes eight coding calls and sets
    `done`; the main thread, woken by the signal, can take the GIL before `done` is set only if a
    call released it (a build that held it makes the main thread wait for the end: `done` is then
    already set)."""
    import sys
    import threading

    from shuff import _shuff

    x = torch.cat([t.reshape(-1) for s in steps for t in s.values()]).repeat(12).contiguous()  # ~45 MB bf16
    book = train([x[: 1 << 20]], "exponent").codebook("c")
    raw = shuff.byte_view(x)
    frame = _shuff.encode(raw, book)
    out = np.empty_like(raw)
    started, state = threading.Event(), {"done": False}

    def code():
        started.set()
        for _ in range(4):  # the extension's calls only: no Python in between that could block
            _shuff.encode(raw, book)
            _shuff.decode_into_buffer(frame, book, out)
        state["done"] = True

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        worker = threading.Thread(target=code)
        worker.start()
        started.wait()
        ran_during_coding = not state["done"]
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ran_during_coding, "the main thread could run only after every coding call had returned: the GIL was held"


def test_a_shift_family_codes_real_gradients_and_names_its_members(steps):
    """shuff.Family over the Rust core: per-stream members chosen from a sample, round trip, and a
    frame naming member 1 refused by the class code alone."""
    pick = lambda s: torch.cat([s[f"layer4.ffn1_act_grad.x.shard{k}"] for k in range(8)], 1)  # noqa: E731
    book = train([pick(s) for s in steps[:4]], "exponent").codebook("c")
    family = shuff.Family.exponent_shift(book, [-1, 1])
    assert len(family) == 3 and family.members[0].fingerprint == book.fingerprint
    x = pick(steps[4])
    frame = shuff.encode_frame(x, family)
    assert len(frame) <= len(shuff.encode_frame(x, book)) * 1.001
    # The frame names the members Family.choose picks from the encoder's own sample.
    raw = shuff.byte_view(x)
    chosen = family.choose(raw)
    assert chosen == family.choose(raw, shuff._shuff.select_stride(x.numel()))
    assert list(shuff._shuff.frame_header_info(frame)["members"][:2]) == list(chosen)
    assert len(family.choose(raw, 2**64 - 1)) == 2  # any stride: element 0 alone
    assert same_bits(shuff.decode_frame_into(frame, family, torch.empty_like(x)), x)
    forced = shuff.encode_frame(x, family, members=[0, 1])
    assert list(shuff._shuff.frame_header_info(forced)["members"][:2]) == [0, 1]
    assert same_bits(shuff.decode_frame_into(forced, family, torch.empty_like(x)), x)
    # The class code alone is not the family: its fingerprint differs.
    with pytest.raises(shuff.ShuffError, match="codebook"):
        shuff.decode_frame_into(forced, book, torch.empty_like(x))
    with pytest.raises(shuff.ShuffError):
        shuff.encode_frame(x, family, members=[0, 3])


def test_trainer_families_code_what_the_set_names_and_can_be_turned_off(steps):
    """shuff.Trainer builds families by default (as `shuff train`): on real gradients whose layers
    differ, the class gets members; encoding through the set uses the family and is never larger
    than the class code alone (beyond the choice from a sample); family="none" gives the plain
    codebook, whose frames decode with it."""
    names = [f"layer{l}.ffn1_act_grad.x.shard{k}" for l in (1, 4) for k in range(8)]

    def build(family: str) -> shuff.CodebookSet:
        tr = shuff.Trainer(family=family)
        for b, s in enumerate(steps[:4]):
            for n in names:
                tr.add("g", s[n], layout="exponent", batch=b)
        return tr.build("t")

    fam, plain = build("auto"), build("none")
    assert len(plain.family("g")) == 1 and plain.members_made_by("g") == []
    assert plain.family("g").fingerprint == plain.codebook("g").fingerprint
    assert fam.codebook("g").fingerprint == plain.codebook("g").fingerprint, "member 0 is the class code"
    assert len(fam.family("g")) > 1, fam.members_made_by("g")
    assert fam.members_made_by("g")[0] == "class" and len(fam.members_made_by("g")) == len(fam.family("g"))
    with_family = without = 0
    for n in names:
        x = steps[4][n]
        frame = shuff.encode_frame(x, fam, "g")
        assert shuff.frame_info(frame)[4] == fam.family("g").fingerprint & 0xFFFFFFFF
        assert same_bits(shuff.decode_frame_into(frame, fam, torch.empty_like(x), "g"), x)
        with_family += len(frame)
        without += len(shuff.encode_frame(x, plain, "g"))
    assert with_family <= without * 1.002, (with_family, without)
    # The set's round trip keeps the members (JSON and binary).
    for again in (shuff.CodebookSet.from_bytes_or_json(fam.to_json().encode()), shuff.CodebookSet.from_bytes_or_json(fam.to_bytes())):
        assert again.family("g").fingerprint == fam.family("g").fingerprint
    with pytest.raises(shuff.ShuffError, match="unknown family"):
        shuff.Trainer(family="sometimes")
