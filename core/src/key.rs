//! Command identity: the 8-byte key every frame carries.

/// The 8-byte identity of a command on the wire: FNV-1a 64 of its name.
///
/// Keys are computed at compile time from [`Command::NAME`](crate::Command::NAME), so both
/// ends agree on a command by name alone, with no registry to keep in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Key(pub u64);

impl Key {
    /// The key of a command name: FNV-1a 64 over its UTF-8 bytes.
    ///
    /// ```
    /// use zmqrpc_core::Key;
    /// const PING: Key = Key::of("ping");
    /// assert_eq!(PING, Key::of("ping"));
    /// assert_ne!(PING, Key::of("pong"));
    /// ```
    pub const fn of(name: &str) -> Key {
        Key(fnv1a64(name.as_bytes()))
    }

    /// The key as its 8 wire bytes (little-endian).
    pub const fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// The key from its 8 wire bytes (little-endian).
    pub const fn from_le_bytes(bytes: [u8; 8]) -> Key {
        Key(u64::from_le_bytes(bytes))
    }
}

impl core::fmt::Display for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// FNV-1a, 64-bit variant, as a `const fn`.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_more(FNV1A64_START, bytes)
}

/// The FNV-1a 64 hash of nothing, where [`fnv1a64_more`] starts.
pub const FNV1A64_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 continued over `bytes` from `hash` (the hash of what came before), so a hash
/// of several pieces needs no copy of them joined: `fnv1a64_more(fnv1a64(a), b)` is the
/// hash of `a` followed by `b`.
pub const fn fnv1a64_more(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_published_fnv1a64_vectors() {
        // Reference values from the FNV specification's test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64_more(fnv1a64(b"foo"), b"bar"), fnv1a64(b"foobar"));
        assert_eq!(fnv1a64_more(FNV1A64_START, b"a"), fnv1a64(b"a"));
    }

    #[test]
    fn key_round_trips_through_wire_bytes() {
        let key = Key::of("sensor.sample");
        assert_eq!(Key::from_le_bytes(key.to_le_bytes()), key);
    }
}
