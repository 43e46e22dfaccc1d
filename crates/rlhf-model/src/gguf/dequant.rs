//! ggml storage types and their dequantization to f32, block by block as llama.cpp's
//! `dequantize_row_*` (and gguf-py's `quants.py`) do.
//!
//! - `Q8_0`: blocks of 32 = f16 scale `d`, 32 × i8 `q`; `x = d * q`.
//! - `Q4_0`: blocks of 32 = f16 `d`, 16 bytes; byte `j` holds element `j` in its low nibble and
//!   element `j + 16` in its high nibble; `x = d * (nibble - 8)`.
//! - `Q4_1`: blocks of 32 = f16 `d`, f16 min `m`, 16 bytes as Q4_0; `x = d * nibble + m`.

/// A ggml tensor type (the `u32` stored in a GGUF tensor info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// 32-bit float.
    pub const F32: GgmlType = GgmlType(0);
    /// 16-bit IEEE float.
    pub const F16: GgmlType = GgmlType(1);
    /// 4-bit, blocks of 32 with one scale.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// 4-bit, blocks of 32 with a scale and a minimum.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// 8-bit, blocks of 32 with one scale.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// bfloat16.
    pub const BF16: GgmlType = GgmlType(30);
    /// The types that can be dequantized, for error messages.
    pub const SUPPORTED: &'static str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1";

    /// From the stored `u32`.
    pub fn from_u32(v: u32) -> Self {
        GgmlType(v)
    }

    /// ggml's name of the type.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16",
        ];
        NAMES.get(self.0 as usize).copied().unwrap_or("unknown")
    }

    /// Bytes of `n` elements, or `None` for a type that cannot be dequantized here (or `n`
    /// not a whole number of blocks).
    pub fn byte_size(self, n: u64) -> Option<u64> {
        let (block, bytes) = match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
            _ => return None,
        };
        (n % block == 0).then_some(n / block * bytes)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// IEEE half to f32 (exact: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalize.
            let shift = f.leading_zeros() - 21; // bring the top set bit to bit 10
            let f = (f << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (f << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn half(b: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// Dequantizes `n` elements of type `ty` stored in `raw`.
pub fn dequantize(ty: GgmlType, raw: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let want = ty.byte_size(n as u64).ok_or_else(|| {
        format!(
            "type {ty} is not supported (or {n} elements are not whole blocks); supported: {}",
            GgmlType::SUPPORTED
        )
    })?;
    if raw.len() as u64 != want {
        return Err(format!(
            "{} bytes for {n} elements of {ty}, expected {want}",
            raw.len()
        ));
    }
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
        ),
        GgmlType::F16 => out.extend(raw.chunks_exact(2).map(half)),
        GgmlType::BF16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)),
        ),
        GgmlType::Q8_0 => {
            for b in raw.chunks_exact(34) {
                let d = half(&b[0..2]);
                out.extend(b[2..].iter().map(|&q| d * (q as i8) as f32));
            }
        }
        GgmlType::Q4_0 => {
            for b in raw.chunks_exact(18) {
                let d = half(&b[0..2]);
                let qs = &b[2..];
                out.extend(qs.iter().map(|&q| d * ((q & 0xf) as i32 - 8) as f32));
                out.extend(qs.iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
            }
        }
        GgmlType::Q4_1 => {
            for b in raw.chunks_exact(20) {
                let (d, m) = (half(&b[0..2]), half(&b[2..4]));
                let qs = &b[4..];
                out.extend(qs.iter().map(|&q| d * (q & 0xf) as f32 + m));
                out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
            }
        }
        _ => unreachable!("byte_size accepted the type"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3800), 0.5);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15)); // a subnormal
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        // Every finite half agrees with libtorch's conversion.
        let all: Vec<u16> = (0..=u16::MAX)
            .filter(|h| (h >> 10) & 0x1f != 0x1f)
            .collect();
        let bytes: Vec<u8> = all.iter().flat_map(|h| h.to_le_bytes()).collect();
        let t = tch::Tensor::from_data_size(&bytes, &[all.len() as i64], tch::Kind::Half)
            .to_kind(tch::Kind::Float);
        let want = Vec::<f32>::try_from(t).unwrap();
        for (h, w) in all.iter().zip(want) {
            assert_eq!(f16_to_f32(*h).to_bits(), w.to_bits(), "half {h:#06x}");
        }
    }

    #[test]
    fn q8_0_block() {
        // d = 0.5 (0x3800), q = 0, 1, -1, 2, -2, ...
        let mut b = vec![0x00, 0x38];
        let qs: Vec<i8> = (0..32)
            .map(|i| if i % 2 == 0 { i / 2 } else { -(i / 2) - 1 })
            .collect();
        b.extend(qs.iter().map(|&q| q as u8));
        let got = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        let want: Vec<f32> = qs.iter().map(|&q| 0.5 * q as f32).collect();
        assert_eq!(got, want);
        assert_eq!(&got[..4], &[0.0, -0.5, 0.5, -1.0]);
    }

    #[test]
    fn q4_0_block() {
        // d = 2.0 (0x4000); byte j = low nibble j % 16, high nibble 15 - j % 16.
        let mut b = vec![0x00, 0x40];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let got = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        // Elements 0..16: (j - 8) * 2; elements 16..32: (15 - j - 8) * 2.
        assert_eq!(&got[..3], &[-16.0, -14.0, -12.0]);
        assert_eq!(got[15], 14.0);
        assert_eq!(&got[16..19], &[14.0, 12.0, 10.0]);
        assert_eq!(got[31], -16.0);
    }

    #[test]
    fn q4_1_block() {
        // d = 0.25 (0x3400), m = -1.0 (0xbc00); byte j = low nibble j, high nibble 15 - j.
        let mut b = vec![0x00, 0x34, 0x00, 0xbc];
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let got = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_eq!(&got[..3], &[-1.0, -0.75, -0.5]);
        assert_eq!(got[15], 2.75);
        assert_eq!(&got[16..18], &[2.75, 2.5]);
        assert_eq!(got[31], -1.0);
        // Two blocks: the second block's scale applies to it alone.
        let mut two = b.clone();
        two.extend([0x00, 0x3c, 0x00, 0x00]); // d = 1, m = 0
        two.extend((0..16u8).map(|j| j | (j << 4)));
        let got = dequantize(GgmlType::Q4_1, &two, 64).unwrap();
        assert_eq!(&got[32..35], &[0.0, 1.0, 2.0]);
        assert_eq!(got[48 + 5], 5.0);
    }

    #[test]
    fn f32_f16_bf16_and_errors() {
        let b: Vec<u8> = [1.5f32, -3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(dequantize(GgmlType::F32, &b, 2).unwrap(), [1.5, -3.0]);
        assert_eq!(
            dequantize(GgmlType::F16, &[0x00, 0x3c, 0x00, 0xc0], 2).unwrap(),
            [1.0, -2.0]
        );
        // bf16 1.0 = 0x3f80, -2.5 = 0xc020.
        assert_eq!(
            dequantize(GgmlType::BF16, &[0x80, 0x3f, 0x20, 0xc0], 2).unwrap(),
            [1.0, -2.5]
        );
        let e = dequantize(GgmlType(14), &[0; 210], 256).unwrap_err();
        assert!(e.contains("Q6_K") && e.contains("Q4_1"), "{e}");
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0; 34], 31).is_err());
    }
}
