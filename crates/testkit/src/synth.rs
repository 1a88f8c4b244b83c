//! Synthetic, deterministic content shared by every dialect: token text, token estimates,
//! embedding vectors and their base64 form.
//!
//! Determinism is the point: the same request always gets the same answer, so the gateway's
//! cache tests and usage accounting can compare numbers exactly.

use std::fmt::Write as _;

/// The text of content token `i`, as streamed: `tok{i} `.
pub(crate) fn push_token(out: &mut String, i: usize) {
    // Writing into a String cannot fail.
    let _ = write!(out, "tok{i} ");
}

/// The whole text of an answer of `tokens` tokens: the concatenation of what a stream sends.
pub(crate) fn text(tokens: usize) -> String {
    let mut out = String::with_capacity(tokens * 7);
    for i in 0..tokens {
        push_token(&mut out, i);
    }
    out
}

/// The prompt tokens the mock reports for `chars` characters of input: about four characters a
/// token, as OpenAI's rule of thumb says, and never zero (every request costs something).
pub(crate) fn prompt_tokens(chars: usize) -> u64 {
    (chars / 4) as u64 + 1
}

/// A unit-length embedding of `dimensions` values derived from `input`'s bytes: the same input
/// always gives the same vector, different inputs almost surely different ones.
pub(crate) fn embedding(input: &[u8], dimensions: usize) -> Vec<f32> {
    let mut state = fnv1a(input);
    let mut values: Vec<f32> = (0..dimensions)
        .map(|_| {
            let bits = splitmix64(&mut state) >> 40; // 24 bits: exactly representable in f32
            (bits as f32 / (1u32 << 23) as f32) - 1.0 // in [-1, 1)
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
    values
}

/// The base64 (standard alphabet, padded) of the little-endian bytes of `values`: what OpenAI
/// sends for `encoding_format: "base64"`. Hand-written: fifteen lines do not justify a dependency.
pub(crate) fn base64_f32_le(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_concatenation_of_tokens() {
        assert_eq!(text(3), "tok0 tok1 tok2 ");
        assert_eq!(text(0), "");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding(b"hello", 16);
        assert_eq!(a, embedding(b"hello", 16));
        assert_ne!(a, embedding(b"hellp", 16));
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert!(embedding(b"x", 0).is_empty());
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        // 1.0f32 is 00 00 80 3f little-endian.
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32_le(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64_f32_le(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
        assert_eq!(base64_f32_le(&[]), "");
    }
}
