//! Element types shuff knows how to split into symbol streams.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The element type of a tensor. All multi-byte types are little-endian in memory,
/// as they are in safetensors files and on every accelerator we target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// bfloat16: 1 sign, 8 exponent, 7 mantissa bits.
    Bf16,
    /// IEEE half: 1 sign, 5 exponent, 10 mantissa bits.
    F16,
    /// IEEE single: 1 sign, 8 exponent, 23 mantissa bits.
    F32,
    /// OCP fp8 E4M3 (the `float8_e4m3fn` of PyTorch): 1 sign, 4 exponent, 3 mantissa bits.
    F8E4M3,
    /// OCP fp8 E5M2: 1 sign, 5 exponent, 2 mantissa bits.
    F8E5M2,
    /// Plain bytes (quantized tensors, anything opaque).
    U8,
}

impl DType {
    /// Every dtype, in the order of their wire ids.
    pub const ALL: [DType; 6] = [
        DType::Bf16,
        DType::F16,
        DType::F32,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::U8,
    ];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::Bf16 | DType::F16 => 2,
            DType::F32 => 4,
            DType::F8E4M3 | DType::F8E5M2 | DType::U8 => 1,
        }
    }

    /// Exponent field width in bits (0 for `u8`).
    pub const fn exponent_bits(self) -> u32 {
        match self {
            DType::Bf16 | DType::F32 => 8,
            DType::F16 | DType::F8E5M2 => 5,
            DType::F8E4M3 => 4,
            DType::U8 => 0,
        }
    }

    /// Mantissa (fraction) field width in bits (8 for `u8`, which has no fields).
    pub const fn mantissa_bits(self) -> u32 {
        match self {
            DType::Bf16 => 7,
            DType::F16 => 10,
            DType::F32 => 23,
            DType::F8E4M3 => 3,
            DType::F8E5M2 => 2,
            DType::U8 => 8,
        }
    }

    /// Stable one-byte id used in binary formats.
    pub const fn id(self) -> u8 {
        match self {
            DType::Bf16 => 0,
            DType::F16 => 1,
            DType::F32 => 2,
            DType::F8E4M3 => 3,
            DType::F8E5M2 => 4,
            DType::U8 => 5,
        }
    }

    /// Inverse of [`DType::id`].
    pub fn from_id(id: u8) -> Option<DType> {
        DType::ALL.get(id as usize).copied()
    }

    /// The lowercase name used on the command line and in files.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::F8E4M3 => "f8e4m3",
            DType::F8E5M2 => "f8e5m2",
            DType::U8 => "u8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown dtype `{s}` (expected one of bf16, f16, f32, f8e4m3, f8e5m2, u8)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_id(d.id()), Some(d));
            assert_eq!(d.name().parse::<DType>(), Ok(d));
            if d != DType::U8 {
                assert_eq!(1 + d.exponent_bits() + d.mantissa_bits(), 8 * d.size() as u32);
            }
        }
        assert_eq!(DType::from_id(6), None);
        assert!("f64".parse::<DType>().is_err());
    }
}
