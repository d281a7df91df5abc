//! FxHash (rustc's hasher) for maps keyed by names, versions and node ids the install itself
//! builds. SipHash's resistance to chosen keys cost more than the lookups: 5% of a cold
//! resolution's CPU in the packuments' `time` maps, and of an edit's in peer resolution
//! (PERF.md, sessions 17-18).

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        for &byte in chunks.remainder() {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type BuildFastHasher = BuildHasherDefault<FastHasher>;
pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildFastHasher>;
pub type FastSet<T> = std::collections::HashSet<T, BuildFastHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keyed_by_strings_and_tuples_find_what_they_hold() {
        let mut map: FastMap<(usize, Vec<Option<String>>), u32> = FastMap::default();
        for i in 0..1000usize {
            map.insert((i, vec![Some(i.to_string()), None]), i as u32);
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get(&(7, vec![Some("7".to_owned()), None])), Some(&7));
        assert_eq!(map.get(&(7, vec![None, Some("7".to_owned())])), None);
    }
}
