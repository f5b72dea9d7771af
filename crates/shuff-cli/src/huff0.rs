//! huff0, zstd's Huffman coder, as the speed peer: linked from `zstd-sys`'s static libzstd through
//! its internal `HUF_*` symbols. It is three-stage (it counts and builds a table for every block),
//! which is exactly the baseline single-stage coding is meant to beat.

use std::ffi::c_void;
use zstd_sys as _; // links libzstd, which defines the symbols below

/// Largest block huff0 codes at once (`HUF_BLOCKSIZE_MAX`).
pub const BLOCK: usize = 128 * 1024;
const TABLELOG_MAX: u32 = 12;
const WORKSPACE_U64: usize = ((8 << 10) + 512) / 8;
const DWORKSPACE_U32: usize = ((2 << 10) + (1 << 9)) / 4;
const FLAG_BMI2: i32 = 1;

extern "C" {
    fn HUF_compress4X_repeat(
        dst: *mut c_void,
        dst_size: usize,
        src: *const c_void,
        src_size: usize,
        max_symbol_value: u32,
        table_log: u32,
        workspace: *mut c_void,
        wksp_size: usize,
        huf_table: *mut usize,
        repeat: *mut i32,
        flags: i32,
    ) -> usize;
    fn HUF_decompress4X_hufOnly_wksp(
        dctx: *mut u32,
        dst: *mut c_void,
        dst_size: usize,
        c_src: *const c_void,
        c_src_size: usize,
        workspace: *mut c_void,
        wksp_size: usize,
        flags: i32,
    ) -> usize;
    fn ZSTD_isError(code: usize) -> u32;
}

/// Reusable huff0 state (tables and workspaces), so the timed loop allocates nothing.
pub struct Huff0 {
    ctable: Vec<usize>,
    dtable: Vec<u32>,
    wksp: Vec<u64>,
    dwksp: Vec<u32>,
    flags: i32,
}

/// One block as huff0 stores it: compressed, or raw when huff0 declines (returns 0 or 1).
pub enum Block {
    Coded(usize),
    Raw,
}

impl Huff0 {
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        let flags = if std::arch::is_x86_feature_detected!("bmi2") { FLAG_BMI2 } else { 0 };
        #[cfg(not(target_arch = "x86_64"))]
        let flags = 0;
        Huff0 {
            ctable: vec![0; 256 + 2],
            dtable: vec![0; 1 + (1 << TABLELOG_MAX)],
            wksp: vec![0; WORKSPACE_U64],
            dwksp: vec![0; DWORKSPACE_U32],
            flags,
        }
    }

    /// Compresses one block (≤ [`BLOCK`] bytes) into `dst`.
    pub fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Block {
        assert!(src.len() <= BLOCK);
        let mut repeat = 0i32; // HUF_repeat_none: build a fresh table, as a three-stage coder does
        // SAFETY: every pointer is valid for the length passed with it (src/dst slices, the
        // workspace of HUF_WORKSPACE_SIZE bytes, 8-byte aligned, and a CTable of
        // HUF_CTABLE_SIZE_ST(255) entries); huff0 writes only within those bounds.
        let r = unsafe {
            HUF_compress4X_repeat(
                dst.as_mut_ptr().cast(),
                dst.len(),
                src.as_ptr().cast(),
                src.len(),
                255,
                11,
                self.wksp.as_mut_ptr().cast(),
                self.wksp.len() * 8,
                self.ctable.as_mut_ptr(),
                &mut repeat,
                self.flags,
            )
        };
        // SAFETY: ZSTD_isError only inspects the value.
        if unsafe { ZSTD_isError(r) } != 0 || r <= 1 {
            Block::Raw
        } else {
            Block::Coded(r)
        }
    }

    /// Decompresses one coded block into `dst` (exactly the original size).
    pub fn decompress(&mut self, src: &[u8], dst: &mut [u8]) -> bool {
        self.dtable[0] = TABLELOG_MAX * 0x0100_0001; // HUF_CREATE_STATIC_DTABLEX2
        // SAFETY: the DTable holds HUF_DTABLE_SIZE(12) cells with its header set as
        // HUF_CREATE_STATIC_DTABLEX2 does, the workspace is HUF_DECOMPRESS_WORKSPACE_SIZE bytes,
        // and src/dst are valid for their lengths; huff0 validates the compressed input.
        let r = unsafe {
            HUF_decompress4X_hufOnly_wksp(
                self.dtable.as_mut_ptr(),
                dst.as_mut_ptr().cast(),
                dst.len(),
                src.as_ptr().cast(),
                src.len(),
                self.dwksp.as_mut_ptr().cast(),
                self.dwksp.len() * 4,
                self.flags,
            )
        };
        // SAFETY: as above.
        unsafe { ZSTD_isError(r) == 0 && r == dst.len() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huff0_round_trips() {
        let src: Vec<u8> = (0..100_000u32).map(|i| ((i * 2654435761) >> 28) as u8).collect();
        let mut h = Huff0::new();
        let mut dst = vec![0u8; BLOCK + 1024];
        let Block::Coded(n) = h.compress(&src, &mut dst) else { panic!("skewed data should code") };
        assert!(n < src.len());
        let mut back = vec![0u8; src.len()];
        assert!(h.decompress(&dst[..n], &mut back));
        assert_eq!(back, src);
    }
}
