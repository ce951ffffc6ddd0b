//! A tally of distinct keys in a fixed-size table: each key's count, the keys ranked by count,
//! and how many records found the table full. It never grows: a key that finds no free slot
//! is counted in [`Tally::overflow`] and dropped. Lock-free (atomics and a `OnceLock` per
//! slot), so the requests that record never wait for each other or for a reader.
//!
//! Keys are placed by a hash keyed with a per-table random seed (`RandomState`), so a client
//! cannot aim its keys at one slot; a slot is claimed by a compare-and-swap of that hash, and
//! a key found under an equal hash is compared in full once its slot is written.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Tally<K, D> {
    slots: Box<[Slot<K, D>]>,
    overflow: AtomicU64,
    /// Claims in order, so that ranking breaks ties by the first seen.
    claims: AtomicU64,
    seed: RandomState,
}

struct Slot<K, D> {
    /// The key's hash with its lowest bit set, so that 0 means free.
    hash: AtomicU64,
    count: AtomicU64,
    /// The key, what was recorded with it when the slot was claimed, and the claim's order.
    entry: OnceLock<(K, D, u64)>,
}

/// What [`Tally::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A key not seen before, in a slot of its own.
    New,
    /// A key already in the table: its count went up.
    Again,
    /// A new key and no free slot: counted in [`Tally::overflow`] only.
    Overflow,
}

/// One entry of [`Tally::ranked`].
pub struct Ranked<'t, K, D> {
    pub count: u64,
    pub key: &'t K,
    pub details: &'t D,
}

impl<K, D> Tally<K, D> {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Tally {
            slots: (0..capacity)
                .map(|_| Slot {
                    hash: AtomicU64::new(0),
                    count: AtomicU64::new(0),
                    entry: OnceLock::new(),
                })
                .collect(),
            overflow: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            seed: RandomState::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Counts the key that `probe` stands for: `same` tells whether a stored key is it, and
    /// `make` builds the key to store (with its details) the first time, when it gets a slot.
    /// The probe is borrowed, so counting a key already held allocates nothing; every probe
    /// of one key must hash alike.
    pub fn record<Q: Hash + ?Sized>(
        &self,
        probe: &Q,
        same: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, D),
    ) -> Recorded {
        let hash = self.seed.hash_one(probe) | 1;
        let capacity = self.slots.len();
        // Reduced in u64, then at most `capacity - 1`: the conversion cannot truncate.
        let start = (hash % capacity as u64) as usize;
        // Linear probing over the whole table: at most `capacity` atomic loads per record.
        for step in 0..capacity {
            let slot = &self.slots[(start + step) % capacity];
            let mut seen = slot.hash.load(Ordering::Acquire);
            if seen == 0 {
                match slot
                    .hash
                    .compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        let order = self.claims.fetch_add(1, Ordering::Relaxed);
                        let (key, details) = make();
                        let _ = slot.entry.set((key, details, order));
                        slot.count.fetch_add(1, Ordering::Relaxed);
                        return Recorded::New;
                    }
                    Err(now) => seen = now,
                }
            }
            if seen == hash {
                // Two different keys share a 64-bit hash only by a freak of chance; the key
                // is compared once its slot is written (a record racing the claim counts on
                // the hash alone).
                if slot.entry.get().is_some_and(|(stored, _, _)| !same(stored)) {
                    continue;
                }
                slot.count.fetch_add(1, Ordering::Relaxed);
                return Recorded::Again;
            }
        }
        self.overflow.fetch_add(1, Ordering::Relaxed);
        Recorded::Overflow
    }

    /// Records that found the table full.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.entry.get().is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key held with its count, most frequent first, then the first seen first.
    pub fn ranked(&self) -> Vec<Ranked<'_, K, D>> {
        let mut held: Vec<(u64, u64, &K, &D)> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let (key, details, order) = slot.entry.get()?;
                Some((slot.count.load(Ordering::Relaxed), *order, key, details))
            })
            .collect();
        held.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        held.into_iter()
            .map(|(count, _, key, details)| Ranked {
                count,
                key,
                details,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_key_and_ranks_by_count_then_first_seen() {
        let tally: Tally<String, usize> = Tally::new(8);
        let mut calls = 0;
        for key in ["b", "a", "b", "c", "a", "b"] {
            tally.record(
                key,
                |stored| stored == key,
                || {
                    calls += 1;
                    (key.to_owned(), calls)
                },
            );
        }
        assert_eq!(calls, 3, "details are made once per distinct key");
        let ranked: Vec<(u64, &str, usize)> = tally
            .ranked()
            .iter()
            .map(|r| (r.count, r.key.as_str(), *r.details))
            .collect();
        assert_eq!(ranked, [(3, "b", 1), (2, "a", 2), (1, "c", 3)]);
        assert_eq!((tally.len(), tally.overflow()), (3, 0));
    }

    #[test]
    fn a_full_table_counts_what_does_not_fit_and_keeps_counting_what_does() {
        let tally: Tally<u32, ()> = Tally::new(4);
        let record = |k: u32| tally.record(&k, |stored| *stored == k, || (k, ()));
        let results: Vec<Recorded> = (0..10).map(record).collect();
        assert_eq!(results[..4], [Recorded::New; 4]);
        assert_eq!(results[4..], [Recorded::Overflow; 6]);
        assert_eq!(record(2), Recorded::Again);
        assert_eq!(record(11), Recorded::Overflow);
        assert_eq!((tally.len(), tally.overflow(), tally.capacity()), (4, 7, 4));
        assert_eq!(tally.ranked()[0].count, 2);
        assert_eq!(*tally.ranked()[0].key, 2);
    }

    #[test]
    fn concurrent_records_lose_no_count_and_never_exceed_the_capacity() {
        let tally: Tally<u32, ()> = Tally::new(64);
        std::thread::scope(|scope| {
            for thread in 0..4u32 {
                let tally = &tally;
                scope.spawn(move || {
                    // 5 000 records of 32 keys every thread shares (each thread records all
                    // of them before any key of its own), then 5 000 keys of its own.
                    for i in 0..10_000u32 {
                        let key = if i < 5_000 {
                            i % 32
                        } else {
                            1_000_000 * (thread + 1) + i
                        };
                        tally.record(&key, |stored| *stored == key, || (key, ()));
                    }
                });
            }
        });
        let ranked = tally.ranked();
        let shared: u64 = ranked.iter().filter(|r| *r.key < 32).map(|r| r.count).sum();
        assert_eq!(shared, 20_000);
        assert_eq!(ranked.iter().filter(|r| *r.key < 32).count(), 32);
        assert_eq!(tally.len(), 64);
        assert_eq!(tally.overflow(), 20_000 - 32);
        let held: u64 = ranked.iter().map(|r| r.count).sum();
        assert_eq!(held + tally.overflow(), 40_000);
    }
}
