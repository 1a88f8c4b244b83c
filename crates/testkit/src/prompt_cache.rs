//! [`PromptCache`]: the prompt prefixes a mock server has been asked to cache, so that a dialect
//! with prompt caching (Anthropic's `cache_control`) can report a cache write on the first
//! request with a prefix and a cache read on every later one, as the provider would.
//!
//! Only hashes are kept: the mock needs to know whether it saw a prefix, not what it said.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// How many prefixes a server remembers before it forgets them all and starts again: bounds
/// the memory of a long benchmark whose every request marks a new prefix. A provider's cache
/// expires too (after five minutes for Anthropic), so a forgotten prefix is realistic.
const MAX_PREFIXES: usize = 100_000;

/// The prefixes seen so far by one server.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    seen: Mutex<HashSet<u64>>,
}

// === impl PromptCache ===

impl PromptCache {
    /// Looks up the prefixes of one request, `prefixes` being the hashes of nested prefixes
    /// from the shortest to the longest: answers the index of the longest one seen before, if
    /// any, and remembers them all for later requests.
    pub(crate) fn longest_seen(&self, prefixes: &[u64]) -> Option<usize> {
        // The lock is never held across an await or a panic-prone call, so a poisoned lock
        // still guards a consistent set.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = prefixes.iter().rposition(|prefix| seen.contains(prefix));
        if seen.len() + prefixes.len() > MAX_PREFIXES {
            seen.clear();
        }
        seen.extend(prefixes);
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lookup_misses_and_later_ones_find_the_longest_prefix_seen() {
        let cache = PromptCache::default();
        assert_eq!(cache.longest_seen(&[1, 2]), None);
        assert_eq!(cache.longest_seen(&[1, 2]), Some(1));
        assert_eq!(cache.longest_seen(&[1, 3]), Some(0), "a longer prefix after a known one");
        assert_eq!(cache.longest_seen(&[1, 3]), Some(1));
        assert_eq!(cache.longest_seen(&[]), None);
    }
}
