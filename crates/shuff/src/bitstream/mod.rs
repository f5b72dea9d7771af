//! The bit-level kernels, apart from the framing around them (as lz4_flex keeps `block/` apart
//! from `frame/`): one stream's lanes to bits ([`write`]) and back ([`read`]). The chunk and frame
//! formats, the checks on sizes read from a frame, and the parallel staging of chunks live in
//! `crate::encode`, `crate::decode` and `crate::frame`.

pub(crate) mod read;
pub(crate) mod write;
#[cfg(target_arch = "x86_64")]
mod x86;
