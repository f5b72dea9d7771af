"""Type stubs of the Rust extension module (crates/shuff-py)."""
from os import PathLike
from typing import Any

__version__: str
CHUNK_BYTES: int
MAX_HEADER_BYTES: int

class ShuffError(ValueError):
    """Every error of shuff's core and bindings (bad frame, wrong codebook, bad input, damaged
    file), with its message; internal panics are reported as ShuffError too."""

class Codebook:
    """One class's fixed code: per stream of its layout, a code length for each of the 256 symbols."""
    @property
    def dtype(self) -> str:
        """The element type it codes: bf16, f16, f32, f8e4m3, f8e5m2 or u8."""
    @property
    def layout(self) -> str:
        """How elements become symbol streams: bytes, planes or exponent."""
    @property
    def fingerprint(self) -> int:
        """64-bit identity of the code (dtype, layout, lengths); frames carry its low 32 bits."""
    def lengths(self) -> list[list[int]]:
        """Per stream, the code length (1-16 bits) of each symbol 0-255."""
    def device_tables(self) -> bytes:
        """The tables a device coder loads: one 9728-byte record per stream (crates/shuff/src/device.rs)."""

class Family:
    """A class's codebook family: the class code and further members (exponent-shifted, clustered),
    one chosen per stream and per message; frames name the members and the family's fingerprint.
    Every coding function takes a Family wherever it takes a Codebook."""
    @staticmethod
    def exponent_shift(codebook: Codebook, steps: list[int] = [-1, 1]) -> Family: ...
    @property
    def members(self) -> list[Codebook]: ...
    @property
    def fingerprint(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def layout(self) -> str: ...
    def choose(self, data: Any, stride: int | None = None) -> bytes:
        """Per stream, the member that codes a 1/stride sample of `data` (tensor bytes) smallest
        (by default the encoder's own sample: select_stride of the element count)."""
    def drift(self, counts: list[list[int]], threshold_pp: float = 1.0) -> tuple[float, bool]:
        """(excess over the counts' entropy in pp of compressibility, whether above `threshold_pp`),
        each stream under the member the encoder would pick."""
    def choose_from_counts(self, counts: list[list[int]]) -> bytes:
        """`choose` from per-stream symbol counts counted elsewhere (the GPU coder's sample)."""
    def device_tables(self, members: list[int]) -> bytes: ...
    def frame_header(self, nbytes: int, lanes: int, members: list[int]) -> bytes: ...
    def __len__(self) -> int: ...

class CodebookSet:
    """Named classes → codebooks, as `shuff train` writes them (JSON with provenance, or the binary
    `SHCB` form)."""
    @staticmethod
    def load(path: str | PathLike[str]) -> CodebookSet:
        """Reads a set file, JSON or binary (told apart by content), checking every fingerprint."""
    @staticmethod
    def from_bytes_or_json(data: bytes) -> CodebookSet:
        """Parses a set from JSON text or binary bytes."""
    def save(self, path: str | PathLike[str]) -> None:
        """Writes the set atomically: binary if `path` ends in .bin or .shcb, else JSON."""
    def to_json(self) -> str:
        """The JSON form, with provenance."""
    def to_bytes(self) -> bytes:
        """The compact binary form (`SHCB`, docs/FORMAT.md)."""
    def classes(self) -> list[str]:
        """Class names, sorted."""
    def codebook(self, cls: str) -> Codebook:
        """The codebook of class `cls`, member 0 of its family (ShuffError listing the classes if
        there is none)."""
    def family(self, cls: str) -> Family:
        """The codebook family of class `cls`: what encoders of the class use."""
    def updated_with(self, newer: CodebookSet) -> CodebookSet:
        """This set with `newer`'s classes put in (replaced or added; versions bumped)."""
    def members_made_by(self, cls: str) -> list[str]:
        """What made each member of `cls`'s family (`class`, `shift -1`, `cluster 2`, …)."""
    @property
    def fingerprint(self) -> int:
        """Fingerprint of the whole set: equal on two processes iff they code every class alike."""
    def __len__(self) -> int: ...

class Trainer:
    """Per-batch histograms per class → one codebook per class (use `shuff.Trainer`, which also
    takes tensors and arrays)."""
    def __init__(self, max_len: int | None = None, family: str = "auto") -> None:
        """`family`: auto (shifted and clustered members where they pay on held-out messages),
        shift, cluster or none, as `shuff train --family`."""
    def add(self, cls: str, dtype: str, layout: str, batch: int, data: Any, source: str = "") -> None:
        """Counts `data` (tensor bytes of `dtype`) into class `cls`, batch `batch`, in `layout`."""
    def add_counts(self, cls: str, dtype: str, layout: str, batch: int, counts: list[list[int]], source: str = "") -> None:
        """Adds symbol counts already counted by `stream_histograms` (e.g. summed over ranks): one
        list of 256 counts per stream of `layout`."""
    def classes(self) -> list[str]:
        """Class names seen so far."""
    def build(self, name: str) -> CodebookSet:
        """One codebook family per class: the codebook from the average of its per-batch
        distributions, each at the maximum length given to the constructor or its layout's default
        (12 bytes, 16 others), and the members the constructor's `family` adds."""

def encode(data: Any, codebook: Codebook | Family, checksum: bool = False, lanes: int = 4, members: list[int] | None = None) -> bytes:
    """A frame of `data` (tensor bytes) in `lanes` lanes per coded stream (1-255); with a family,
    each stream by `members[s]`, or by the member `Family.choose` picks."""
def encode_into_buffer(data: Any, codebook: Codebook | Family, out: Any, checksum: bool = False, lanes: int = 4, members: list[int] | None = None) -> int:
    """Encodes into `out` (at least `max_frame_size` bytes, not overlapping `data`); returns the
    frame's length."""
def decode_into_buffer(frame: Any, codebook: Codebook | Family, out: Any) -> None:
    """Decodes `frame` into `out`, a writable buffer of exactly the decoded size (not overlapping
    the frame)."""
def frame_info(frame: Any) -> tuple[str, str, int, int, int | None]:
    """(dtype, layout, elements, decoded bytes, 32-bit fingerprint or None) from a frame's header."""
def frame_header_info(frame: Any) -> dict[str, Any]:
    """Everything a frame's header says: dtype, layout, elements, decoded_len, fingerprint, checksum,
    lanes, members, version, header_len."""
def frame_header(codebook: Codebook, nbytes: int, lanes: int) -> bytes:
    """The version-2 header (no checksum) a device encoder writes before its chunks."""
def measure(data: Any, codebook: Codebook | Family) -> tuple[int, float, int, int]:
    """(original, Shannon, own-Huffman payload, fixed-codebook) bits of `data`, as `shuff eval`."""
def stream_histograms(data: Any, dtype: str, layout: str) -> list[list[int]]:
    """Symbol counts of `data` (tensor bytes of `dtype`): 256 per stream of `layout`, as
    `Trainer.add` counts them."""
def max_frame_size(dtype: str, layout: str, nbytes: int) -> int:
    """The worst-case frame size for `nbytes` of tensor data."""

def select_stride(elements: int) -> int:
    """The stride of the sample from which the encoder picks a family's members for a message of
    `elements` elements (the GPU coder samples with it too)."""

def save_file(tensors: list[tuple[str, str, list[int], Any]], path: str | PathLike[str], book: CodebookSet | None = None,
              metadata: dict[str, str] | None = None) -> None:
    """Compresses (name, safetensors dtype, shape, C-contiguous bytes) tensors into a `.shuff`
    container at `path`, atomically (use `shuff.save_file`, which takes tensors and arrays)."""

class ContainerFile:
    """An open `.shuff` container; only the tensors asked for are read (use `shuff.safe_open`)."""
    def __init__(self, path: str | PathLike[str], book: CodebookSet | None = None) -> None: ...
    def tensors(self) -> list[tuple[str, str, list[int], int]]:
        """Per tensor, in file order: name, safetensors dtype, shape, byte length."""
    def header_json(self) -> str:
        """The stored safetensors header's JSON."""
    def read_into(self, name: str, out: Any) -> None:
        """Decodes tensor `name` into `out`, a writable C-contiguous buffer of exactly its size."""
