//! The decoder's lane loops that pay for being written in x86-64 assembly (as huff0 keeps its fast
//! loops in `huf_decompress_amd64.S`); only the BMI2 build calls them, the Rust loops in `read.rs`
//! stay the portable reference, and tests and fuzz targets decode every frame through both.
//!
//! - The two-symbol loop of `read::decode_lanes_k` (bf16 `bytes`: every byte coded with one code,
//!   ~1.77 symbols a lookup): four lanes of state (read position, output position, bit buffer: 12
//!   values), the table and two temporaries need all fifteen general registers. Compiled from Rust
//!   the loop spilled (234 instructions a round of 16 steps, 53 of them register copies, 41 stack
//!   accesses); here everything stays in registers (184 a round): 1.47 → 1.59 GB/s on 64 KiB of
//!   held-out activations, one pinned EPYC core.
//! - Eight lanes of one-symbol steps (`exponent` mantissas), which Rust cannot keep in registers at
//!   all, writing through a stage (see [`Lanes8`]): 1.49 → 1.83 GB/s for the whole decode.

use crate::codebook::{PairEntry, DECODE_TABLE_BITS, PAIR_TABLE_BITS};
use std::arch::asm;

/// Four lanes' state as the loop reads and writes it (see `read::decode_lanes_k`): read positions,
/// output positions, bit buffers with their sentinel.
#[repr(C)]
pub(crate) struct LaneState {
    pub p: [*const u8; 4],
    pub w: [*mut u8; 4],
    pub b: [u64; 4],
}

/// Refill of one lane (`b` its bit buffer, `p` its read position), as `read::decode_lanes_k`'s
/// `refill!`: c = leading zeros of `b` (bits consumed since `p`, above the sentinel); `p` moves
/// over the whole bytes, 8 bytes are loaded there, the sentinel set, and the bits of the first
/// byte already consumed shifted out. Temporaries: rax, rcx.
macro_rules! refill {
    ($b:literal, $p:literal) => {
        concat!(
            "lzcnt rax, ", $b, "\n",
            "mov ecx, eax\n",
            "shr ecx, 3\n",
            "add ", $p, ", rcx\n",
            "mov rcx, qword ptr [", $p, "]\n",
            "bts rcx, 63\n",
            "and eax, 7\n",
            "shrx ", $b, ", rcx, rax\n",
        )
    };
}

/// The end of a round: the round counter, kept in xmm1 (every general register holds lane state),
/// counts down, and the loop goes back to label 2 until it reaches 0. Temporary: rax.
macro_rules! next_round {
    () => {
        concat!("movq rax, xmm1\n", "dec rax\n", "movq xmm1, rax\n", "jnz 2b\n")
    };
}

/// One two-symbol step of one lane (`b` its bit buffer, `b32` the same register's low half, `w`
/// its output position), as `step!` with `MODE == PAIR`: the entry's low byte is the bits it
/// uses (the shift takes its count from the low 6 bits), the next byte the symbols it decodes
/// (`ah`), the high half the symbols, stored as two bytes. Temporaries: rax, rcx; rsi: the table.
macro_rules! step {
    ($b:literal, $b32:literal, $w:literal) => {
        concat!(
            "mov eax, ", $b32, "\n",
            "and eax, {mask}\n",
            "mov eax, dword ptr [rsi + rax*4]\n",
            "shrx ", $b, ", ", $b, ", rax\n",
            "movzx ecx, ah\n",
            "shr eax, 16\n",
            "mov word ptr [", $w, "], ax\n",
            "add ", $w, ", rcx\n",
        )
    };
}

/// One step of each lane, in lane order.
macro_rules! steps {
    () => {
        concat!(step!("r8", "r8d", "rbx"), step!("r9", "r9d", "rdx"), step!("r10", "r10d", "rdi"), step!("r11", "r11d", "rbp"))
    };
}

/// Runs `rounds` rounds of four two-symbol steps in each of four lanes, from and back to `state`.
///
/// # Safety
/// The CPU has BMI2 and LZCNT; `rounds` ≥ 1; for `rounds` rounds every lane may read 8 bytes at
/// up to 7 bytes a round past its read position and write 8 bytes a round past its output position
/// (the bounds `read::decode_lanes_k` computes for its own loop).
#[target_feature(enable = "bmi2,lzcnt")]
pub(crate) unsafe fn pair_rounds(state: &mut LaneState, pairs: &[PairEntry; 1 << PAIR_TABLE_BITS], rounds: usize) {
    debug_assert!(rounds >= 1);
    // Registers: r8–r11 bit buffers, r12–r15 read positions, rbx/rdx/rdi/rbp output positions,
    // rsi the table, rax/rcx temporaries; the round counter and the state's address wait in xmm1
    // and xmm0. rbx and rbp cannot be asm operands (LLVM reserves them): they are saved in xmm2
    // and xmm3 and restored. Nothing touches the stack.
    // SAFETY: the caller guarantees the reads and writes stay in bounds (see above); every register
    // the block changes is declared or restored.
    unsafe {
        asm!(
            "movq xmm2, rbx",
            "movq xmm3, rbp",
            "movq xmm0, rdi",
            "movq xmm1, rdx",
            "mov r12, qword ptr [rdi]",
            "mov r13, qword ptr [rdi + 8]",
            "mov r14, qword ptr [rdi + 16]",
            "mov r15, qword ptr [rdi + 24]",
            "mov rbx, qword ptr [rdi + 32]",
            "mov rdx, qword ptr [rdi + 40]",
            "mov rbp, qword ptr [rdi + 56]",
            "mov r8, qword ptr [rdi + 64]",
            "mov r9, qword ptr [rdi + 72]",
            "mov r10, qword ptr [rdi + 80]",
            "mov r11, qword ptr [rdi + 88]",
            "mov rdi, qword ptr [rdi + 48]",
            "2:",
            refill!("r8", "r12"),
            refill!("r9", "r13"),
            refill!("r10", "r14"),
            refill!("r11", "r15"),
            steps!(),
            steps!(),
            steps!(),
            steps!(),
            next_round!(),
            "movq rax, xmm0",
            "mov qword ptr [rax], r12",
            "mov qword ptr [rax + 8], r13",
            "mov qword ptr [rax + 16], r14",
            "mov qword ptr [rax + 24], r15",
            "mov qword ptr [rax + 32], rbx",
            "mov qword ptr [rax + 40], rdx",
            "mov qword ptr [rax + 48], rdi",
            "mov qword ptr [rax + 56], rbp",
            "mov qword ptr [rax + 64], r8",
            "mov qword ptr [rax + 72], r9",
            "mov qword ptr [rax + 80], r10",
            "mov qword ptr [rax + 88], r11",
            "movq rbx, xmm2",
            "movq rbp, xmm3",
            mask = const (1u32 << PAIR_TABLE_BITS) - 1,
            inout("rdi") state as *mut LaneState => _,
            inout("rdx") rounds => _,
            in("rsi") pairs.as_ptr(),
            out("rax") _,
            out("rcx") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            options(nostack),
        );
    }
}

/// Eight lanes' state for the eight-lane one-symbol loops (`single8_rounds_k*`): read positions,
/// bit buffers with their sentinel, and where the next round's symbols go in the stage.
///
/// The loop does not write each lane's symbols to the lane's own output: eight streams of byte
/// stores, one cache line each, cost more than the lookups (the frame's lanes are `n / lanes`
/// symbols apart, a multiple of 4 KiB for whole 64 KiB chunks, so all eight lines fall in one set
/// of the 8-way L1). Step `k` of a round writes lane `l`'s symbol at `stage + 8·k + l` instead —
/// one line for the whole round — and [`unstage`] moves the symbols to the lanes afterwards.
/// Measured on 64 KiB of bf16 activations in the `exponent` layout (one pinned EPYC core):
/// writing to the lanes 1.50 GB/s, to lanes offset off the 4 KiB multiple 1.75, to the stage ~1.9
/// before the move back.
#[repr(C)]
pub(crate) struct Lanes8 {
    pub p: [*const u8; 8],
    pub b: [u64; 8],
    pub stage: *mut u8,
}

/// Refill of one lane of eight (`b` its bit buffer, `x` the xmm register holding its read position,
/// since the general registers hold the eight bit buffers): `p·8 + c` is the bit position of the
/// next unread bit (c = leading zeros of `b`), its whole bytes the new `p`; then as [`refill!`].
/// Temporaries: rax, rcx.
macro_rules! refill8 {
    ($b:literal, $x:literal) => {
        concat!(
            "lzcnt rax, ", $b, "\n",
            "movq rcx, ", $x, "\n",
            "lea rcx, [rax + rcx*8]\n",
            "shr rcx, 3\n",
            "movq ", $x, ", rcx\n",
            "mov rcx, qword ptr [rcx]\n",
            "bts rcx, 63\n",
            "and eax, 7\n",
            "shrx ", $b, ", rcx, rax\n",
        )
    };
}

/// One one-symbol step of one lane (`b` its bit buffer, `b32` its low half, `at` the stage byte),
/// as `step!` with `MODE == SINGLE`: the entry's low byte is the bits used (the shift's count),
/// its high byte (`ah`) the symbol. Temporary: rax; rsi: the table.
macro_rules! step1 {
    ($b:literal, $b32:literal, $at:expr) => {
        concat!(
            "mov eax, ", $b32, "\n",
            "and eax, {mask}\n",
            "movzx eax, word ptr [rsi + rax*2]\n",
            "mov byte ptr [", $at, "], ah\n",
            "shrx ", $b, ", ", $b, ", rax\n",
        )
    };
}

/// Step `k` of a round in each of the eight lanes: lane `l` writes at `stage + 8·k + l` (rdi =
/// the round's part of the stage).
macro_rules! steps8 {
    ($k:literal) => {
        concat!(
            step1!("r8", "r8d", concat!("rdi + 8*", $k)),
            step1!("r9", "r9d", concat!("rdi + 8*", $k, " + 1")),
            step1!("r10", "r10d", concat!("rdi + 8*", $k, " + 2")),
            step1!("r11", "r11d", concat!("rdi + 8*", $k, " + 3")),
            step1!("r12", "r12d", concat!("rdi + 8*", $k, " + 4")),
            step1!("r13", "r13d", concat!("rdi + 8*", $k, " + 5")),
            step1!("r14", "r14d", concat!("rdi + 8*", $k, " + 6")),
            step1!("r15", "r15d", concat!("rdi + 8*", $k, " + 7")),
        )
    };
}

/// Defines an eight-lane one-symbol loop of `K` steps a refill.
macro_rules! single8 {
    ($name:ident, $k:literal, [$($step:literal),*]) => {
        /// Runs `rounds` rounds of eight lanes, each a refill and `K` one-symbol steps, from and
        /// back to `lanes`, writing the symbols to the stage (see [`Lanes8`]).
        ///
        /// # Safety
        /// The CPU has BMI2 and LZCNT; `rounds` ≥ 1; for `rounds` rounds every lane may read 8
        /// bytes at up to 7 bytes a round past its read position, and the stage has room for
        /// `8·K·rounds` bytes.
        #[target_feature(enable = "bmi2,lzcnt")]
        pub(crate) unsafe fn $name(lanes: &mut Lanes8, table: &[u16; 1 << DECODE_TABLE_BITS], rounds: usize) {
            debug_assert!(rounds >= 1);
            // Registers: r8–r15 bit buffers, xmm4–xmm11 read positions, rdi the stage, rsi the
            // table, rax/rcx temporaries; the round counter and the state's address wait in xmm1
            // and xmm0.
            // SAFETY: the caller guarantees the reads and writes stay in bounds (see above); every
            // register the block changes is declared; nothing touches the stack.
            unsafe {
                asm!(
                    "movq xmm0, rdi",
                    "movq xmm1, rdx",
                    "movq xmm4, qword ptr [rdi]",
                    "movq xmm5, qword ptr [rdi + 8]",
                    "movq xmm6, qword ptr [rdi + 16]",
                    "movq xmm7, qword ptr [rdi + 24]",
                    "movq xmm8, qword ptr [rdi + 32]",
                    "movq xmm9, qword ptr [rdi + 40]",
                    "movq xmm10, qword ptr [rdi + 48]",
                    "movq xmm11, qword ptr [rdi + 56]",
                    "mov r8, qword ptr [rdi + 64]",
                    "mov r9, qword ptr [rdi + 72]",
                    "mov r10, qword ptr [rdi + 80]",
                    "mov r11, qword ptr [rdi + 88]",
                    "mov r12, qword ptr [rdi + 96]",
                    "mov r13, qword ptr [rdi + 104]",
                    "mov r14, qword ptr [rdi + 112]",
                    "mov r15, qword ptr [rdi + 120]",
                    "mov rdi, qword ptr [rdi + 128]",
                    "2:",
                    refill8!("r8", "xmm4"),
                    refill8!("r9", "xmm5"),
                    refill8!("r10", "xmm6"),
                    refill8!("r11", "xmm7"),
                    refill8!("r12", "xmm8"),
                    refill8!("r13", "xmm9"),
                    refill8!("r14", "xmm10"),
                    refill8!("r15", "xmm11"),
                    $(steps8!($step),)*
                    concat!("add rdi, 8*", $k),
                    next_round!(),
                    "movq rax, xmm0",
                    "movq qword ptr [rax], xmm4",
                    "movq qword ptr [rax + 8], xmm5",
                    "movq qword ptr [rax + 16], xmm6",
                    "movq qword ptr [rax + 24], xmm7",
                    "movq qword ptr [rax + 32], xmm8",
                    "movq qword ptr [rax + 40], xmm9",
                    "movq qword ptr [rax + 48], xmm10",
                    "movq qword ptr [rax + 56], xmm11",
                    "mov qword ptr [rax + 64], r8",
                    "mov qword ptr [rax + 72], r9",
                    "mov qword ptr [rax + 80], r10",
                    "mov qword ptr [rax + 88], r11",
                    "mov qword ptr [rax + 96], r12",
                    "mov qword ptr [rax + 104], r13",
                    "mov qword ptr [rax + 112], r14",
                    "mov qword ptr [rax + 120], r15",
                    "mov qword ptr [rax + 128], rdi",
                    mask = const (1u32 << DECODE_TABLE_BITS) - 1,
                    inout("rdi") lanes as *mut Lanes8 => _,
                    inout("rdx") rounds => _,
                    in("rsi") table.as_ptr(),
                    out("rax") _, out("rcx") _,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    out("r12") _, out("r13") _, out("r14") _, out("r15") _,
                    out("xmm0") _, out("xmm1") _,
                    out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                    out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                    options(nostack),
                );
            }
        }
    };
}

single8!(single8_rounds_k4, "4", ["0", "1", "2", "3"]);
single8!(single8_rounds_k5, "5", ["0", "1", "2", "3", "4"]);
single8!(single8_rounds_k6, "6", ["0", "1", "2", "3", "4", "5"]);

/// Moves staged symbols to the lanes: `stage` holds rows of eight bytes (row `j`: symbol `j` of
/// lanes 0–7, as the eight-lane loop writes them), and symbol `j` of lane `l` goes to
/// `outs[l][at + j]`. Sixteen rows at a time are transposed in SSE2 registers (four rounds of
/// unpacking, then one 16-byte store a lane); the rest byte by byte.
pub(crate) fn unstage(stage: &[u8], outs: &mut [&mut [u8]; 8], at: usize) {
    use std::arch::x86_64::*;
    let rows = stage.len() / 8;
    let full = rows / 16 * 16;
    for l in 0..8 {
        assert!(outs[l].len() >= at + rows, "unstage: lane {l} too short");
    }
    for j0 in (0..full).step_by(16) {
        let block = &stage[j0 * 8..(j0 + 16) * 8];
        // SAFETY: SSE2 is part of x86-64; the loads read 8 bytes inside `block` (16 rows of 8),
        // the stores write 16 bytes at `at + j0` of each lane, inside it (asserted above).
        unsafe {
            let row = |r: usize| _mm_loadl_epi64(block.as_ptr().add(8 * r).cast());
            // Pairs of rows, byte by byte: column c of rows 2k, 2k+1 in 16-bit unit c.
            let p: [__m128i; 8] = std::array::from_fn(|k| _mm_unpacklo_epi8(row(2 * k), row(2 * k + 1)));
            // Four rows: columns 0–3 (low) and 4–7 (high), 4 bytes a column.
            let q_lo: [__m128i; 4] = std::array::from_fn(|k| _mm_unpacklo_epi16(p[2 * k], p[2 * k + 1]));
            let q_hi: [__m128i; 4] = std::array::from_fn(|k| _mm_unpackhi_epi16(p[2 * k], p[2 * k + 1]));
            // Eight rows (k = 0: rows 0–7, 1: rows 8–15): two columns a register, 8 bytes each.
            let cols = |q: &[__m128i; 4], k: usize| [_mm_unpacklo_epi32(q[2 * k], q[2 * k + 1]), _mm_unpackhi_epi32(q[2 * k], q[2 * k + 1])];
            let (c01_03, c01_47) = (cols(&q_lo, 0), cols(&q_hi, 0));
            let (c89_03, c89_47) = (cols(&q_lo, 1), cols(&q_hi, 1));
            let halves = [(c01_03[0], c89_03[0]), (c01_03[1], c89_03[1]), (c01_47[0], c89_47[0]), (c01_47[1], c89_47[1])];
            for (h, (top, bottom)) in halves.into_iter().enumerate() {
                let (even, odd) = (_mm_unpacklo_epi64(top, bottom), _mm_unpackhi_epi64(top, bottom));
                _mm_storeu_si128(outs[2 * h][at + j0..].as_mut_ptr().cast(), even);
                _mm_storeu_si128(outs[2 * h + 1][at + j0..].as_mut_ptr().cast(), odd);
            }
        }
    }
    for j in full..rows {
        for l in 0..8 {
            outs[l][at + j] = stage[8 * j + l];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unstage;

    #[test]
    fn unstage_transposes_every_row_count() {
        for rows in [0, 1, 15, 16, 17, 40, 160, 163] {
            let stage: Vec<u8> = (0..rows * 8).map(|i| (i * 7 + i / 8) as u8).collect();
            let mut lanes: Vec<Vec<u8>> = (0..8).map(|_| vec![0xee; rows + 5]).collect();
            {
                let [a, b, c, d, e, f, g, h] = &mut lanes[..] else { unreachable!() };
                let mut outs: [&mut [u8]; 8] = [a, b, c, d, e, f, g, h];
                unstage(&stage, &mut outs, 3);
            }
            for (l, lane) in lanes.iter().enumerate() {
                assert_eq!(&lane[..3], &[0xee; 3]);
                for j in 0..rows {
                    assert_eq!(lane[3 + j], stage[8 * j + l], "rows {rows} lane {l} row {j}");
                }
                assert_eq!(&lane[3 + rows..], &[0xee; 2]);
            }
        }
    }
}
