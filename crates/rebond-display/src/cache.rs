//! The page's tile cache, as the encoder keeps track of it: which tile pictures the
//! page holds, in which slot. A tile whose new pixels the page holds already (a window
//! brought back to the front, a dialog closed over what it covered) is drawn from its
//! slot instead of being sent again.
//!
//! Tiles are known by a 128-bit hash of their pixels (xxh3, seeded per session): the
//! encoder keeps no copy of them, so the cache costs the worker 1024 hashes, not 16 MiB
//! of pixels. Slots are handed out in turn (first in, first out), so the tiles of a
//! rectangle stored together go to consecutive slots and one
//! [`rebond_wire::CacheRect`] says where all of them go.
//!
//! INVARIANT: a slot's hash is that of the pixels the page stored in it; a slot is
//! referenced only after it was stored since the last [`TileCache::clear`].

use std::collections::HashMap;

use rebond_wire::TILE_CACHE_SLOTS;

/// A tile's pixels (and size), as the cache knows them.
pub(crate) type TileHash = u128;

pub(crate) struct TileCache {
    seed: u64,
    /// What each slot holds.
    slots: Vec<Option<TileHash>>,
    /// Where each hash is (the latest slot that holds it).
    by_hash: HashMap<TileHash, u16>,
    /// The next slot to hand out.
    next: u16,
    /// A tile's bytes, gathered for hashing.
    scratch: Vec<u8>,
}

impl TileCache {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, slots: vec![None; usize::from(TILE_CACHE_SLOTS)], by_hash: HashMap::new(), next: 0, scratch: Vec::new() }
    }

    /// The page lost its picture and what it kept (a new page): nothing is in the cache.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(None);
        self.by_hash.clear();
        self.next = 0;
    }

    /// The hash of a tile of `width` × `height` pixels given as its lines (RGBA). The
    /// lines are gathered into one buffer and hashed in one call: three times as fast as
    /// feeding xxh3 line by line (`cargo bench -p rebond-display`, the flood).
    pub(crate) fn hash<'a>(&mut self, width: u16, height: u16, lines: impl Iterator<Item = &'a [u8]>) -> TileHash {
        self.scratch.clear();
        self.scratch.extend_from_slice(&width.to_le_bytes());
        self.scratch.extend_from_slice(&height.to_le_bytes());
        for line in lines {
            self.scratch.extend_from_slice(line);
        }
        xxhash_rust::xxh3::xxh3_128_with_seed(&self.scratch, self.seed)
    }

    /// The slot holding a tile with this hash, if any.
    pub(crate) fn find(&self, hash: TileHash) -> Option<u16> {
        self.by_hash.get(&hash).copied()
    }

    /// Whether `slot` holds a tile with this hash.
    pub(crate) fn holds(&self, slot: u16, hash: TileHash) -> bool {
        self.slots.get(usize::from(slot)) == Some(&Some(hash))
    }

    /// The slot [`TileCache::store`] hands out next.
    pub(crate) fn next_slot(&self) -> u16 {
        self.next
    }

    /// Hands out the next slot for a tile with this hash (the page will store it there),
    /// forgetting what the slot held.
    pub(crate) fn store(&mut self, hash: TileHash) -> u16 {
        let slot = self.next;
        self.next = (self.next + 1) % TILE_CACHE_SLOTS;
        if let Some(old) = self.slots[usize::from(slot)].replace(hash) {
            if self.by_hash.get(&old) == Some(&slot) {
                self.by_hash.remove(&old);
            }
        }
        self.by_hash.insert(hash, slot);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_go_in_turn_and_an_overwritten_slot_is_forgotten() {
        let mut c = TileCache::new(7);
        let (a, b) = (c.hash(2, 1, [&[1u8; 8][..]].into_iter()), c.hash(2, 1, [&[2u8; 8][..]].into_iter()));
        assert_ne!(a, b);
        assert_eq!(c.store(a), 0);
        assert_eq!(c.find(a), Some(0));
        for i in 1..TILE_CACHE_SLOTS {
            assert_eq!(c.store(u128::from(i) << 64), i);
        }
        assert_eq!(c.find(a), Some(0), "still there after a full turn");
        assert_eq!(c.store(b), 0, "the first slot comes round again");
        assert_eq!(c.find(a), None);
        assert_eq!(c.find(b), Some(0));
        c.clear();
        assert_eq!(c.find(b), None);
    }

    #[test]
    fn the_size_and_the_seed_are_part_of_the_hash() {
        let mut c = TileCache::new(1);
        let lines = [&[9u8; 16][..], &[9u8; 16][..]];
        assert_ne!(c.hash(4, 2, lines.into_iter()), c.hash(8, 1, [&[9u8; 32][..]].into_iter()));
        assert_ne!(c.hash(4, 2, lines.into_iter()), TileCache::new(2).hash(4, 2, lines.into_iter()));
        assert_eq!(c.hash(4, 2, lines.into_iter()), TileCache::new(1).hash(4, 2, [&[9u8; 32][..]].into_iter()), "lines are the bytes, joined");
    }

    #[test]
    fn a_hash_stored_twice_is_found_at_its_latest_slot() {
        let mut c = TileCache::new(0);
        c.store(5);
        c.store(5);
        assert_eq!(c.find(5), Some(1));
        for i in 2..=TILE_CACHE_SLOTS {
            c.store(u128::from(i) << 64);
        }
        // Slot 0 was overwritten: the hash lives on in slot 1.
        assert_eq!(c.find(5), Some(1));
    }
}
