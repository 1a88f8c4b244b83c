//! Virtual key secrets: generating them, hashing them, recognising them and comparing hashes.
//!
//! A virtual key is `sk-sy-` followed by 40 base62 characters drawn from the operating system's
//! CSPRNG (`getrandom`): 40 × log2(62) ≈ 238 bits of entropy. Only its SHA-256 (hex) is stored.
//!
//! Why SHA-256 and not a slow password hash (argon2, bcrypt): a slow hash exists to make guessing
//! a *low-entropy* secret expensive, because people choose guessable passwords. A 238-bit random
//! key cannot be guessed however fast the hash is (2^237 tries on average), so stretching adds
//! no security; it would only add milliseconds of CPU to every request that authenticates, and
//! the gateway's budget is tens of microseconds. A fast hash also lets the store find a key with
//! an index lookup on its hash.
//!
//! ```
//! use switchyard_accounting::keys;
//!
//! let new = keys::generate();
//! assert!(keys::is_virtual_key(&new.secret));
//! assert!(keys::hashes_equal(&keys::hash(&new.secret), &new.hash));
//! assert_eq!(new.prefix, &new.secret[..10]);
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

/// What every virtual key starts with.
pub const KEY_PREFIX: &str = "sk-sy-";

/// How many random base62 characters follow [`KEY_PREFIX`].
pub const SECRET_CHARS: usize = 40;

/// How many leading characters of a key are kept in the clear ([`NewSecret::prefix`]).
pub const SHOWN_PREFIX_CHARS: usize = 10;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: the secret (shown once to its owner, never stored), its hash and
/// its displayable prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSecret {
    /// The key itself: `sk-sy-` and 40 base62 characters.
    pub secret: String,
    /// SHA-256 of the secret, lowercase hex: what the store keeps.
    pub hash: String,
    /// The first 10 characters (`sk-sy-AbCd`), so that people can tell keys apart.
    pub prefix: String,
}

// The secret must not reach a log line through `{:?}`.
impl fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSecret")
            .field("secret", &"<redacted>")
            .field("hash", &self.hash)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Generates a new virtual key from the operating system's CSPRNG.
///
/// # Panics
///
/// If the operating system has no random source at all (`getrandom` fails), which leaves no
/// safe way to make a key; this does not happen on supported platforms.
pub fn generate() -> NewSecret {
    let mut secret = String::with_capacity(KEY_PREFIX.len() + SECRET_CHARS);
    secret.push_str(KEY_PREFIX);
    secret.push_str(&random_base62(SECRET_CHARS));
    let hash = hash(&secret);
    let prefix = secret[..SHOWN_PREFIX_CHARS].to_owned();
    NewSecret { secret, hash, prefix }
}

/// SHA-256 of a key, lowercase hex (64 characters).
pub fn hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        hex.push(HEX[usize::from(byte >> 4)] as char);
        hex.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    hex
}

/// Whether `s` has the shape of a virtual key (`sk-sy-` and 40 base62 characters), so that the
/// gateway can tell it from a master key or a provider key without a database lookup.
pub fn is_virtual_key(s: &str) -> bool {
    s.len() == KEY_PREFIX.len() + SECRET_CHARS
        && s.starts_with(KEY_PREFIX)
        && s.as_bytes()[KEY_PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric)
}

/// Compares two hashes (or any two strings) in time that depends only on their lengths, so that
/// an attacker timing the comparison learns nothing about how much of a guess was right.
///
/// The store finds keys by an index lookup on the hash, which is fine: knowing which hashes
/// exist does not help anyone find a preimage. This is for comparisons made in memory (a cached
/// key, a master key).
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// `n` base62 characters from the operating system's CSPRNG, without modulo bias: bytes of 248
/// or more (248 = 4 × 62) are rejected, so each of the 62 characters is equally likely.
pub(crate) fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    // 64 bytes almost always suffice for 40 characters (each byte is kept with p = 248/256).
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill_random(&mut buf);
        for &byte in &buf {
            if byte < 248 && out.len() < n {
                out.push(BASE62[usize::from(byte % 62)] as char);
            }
        }
    }
    out
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    // Failing here means the platform has no usable entropy source; producing a predictable key
    // or id instead would be far worse than stopping.
    if let Err(err) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed ({err}); cannot make keys safely");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let new = generate();
        assert_eq!(new.secret.len(), 46);
        assert!(new.secret.starts_with("sk-sy-"));
        assert!(is_virtual_key(&new.secret));
        assert_eq!(new.prefix.len(), 10);
        assert!(new.secret.starts_with(&new.prefix));
        assert_eq!(new.hash, hash(&new.secret));
        assert_eq!(new.hash.len(), 64);
        assert!(!format!("{new:?}").contains(&new.secret));
    }

    #[test]
    fn generated_keys_differ() {
        let keys: std::collections::HashSet<String> = (0..1000).map(|_| generate().secret).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn every_base62_character_appears() {
        // 62 characters over 20,000 draws: each is expected ~322 times, so a missing one means
        // the alphabet or the rejection sampling is broken.
        let s = random_base62(20_000);
        for &c in BASE62 {
            assert!(s.as_bytes().contains(&c), "{} never drawn", c as char);
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn recognises_virtual_keys_only() {
        assert!(is_virtual_key(&format!("sk-sy-{}", "a".repeat(40))));
        assert!(!is_virtual_key(&format!("sk-sy-{}", "a".repeat(39))));
        assert!(!is_virtual_key(&format!("sk-sy-{}-", "a".repeat(39))));
        assert!(!is_virtual_key(&format!("sk-xx-{}", "a".repeat(40))));
        assert!(!is_virtual_key("sk-proj-abc"));
        assert!(!is_virtual_key(""));
    }

    #[test]
    fn hashes_equal_compares_content_and_length() {
        assert!(hashes_equal("abc", "abc"));
        assert!(!hashes_equal("abc", "abd"));
        assert!(!hashes_equal("abc", "abcd"));
        assert!(hashes_equal("", ""));
    }
}
