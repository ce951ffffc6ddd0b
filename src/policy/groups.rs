//! Lists of rule (or scope) numbers keyed by a dense id, stored flat: one allocation for all
//! of them however many ids, and a slice per id without indirection.

/// `Groups::get(id)` is the sorted, duplicate-free list given for `id` at build time.
#[derive(Debug, Default, Clone)]
pub struct Groups {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Groups {
    /// Flattens `lists` (each sorted and deduplicated here).
    pub fn build(lists: Vec<Vec<u32>>) -> Self {
        let mut starts = Vec::with_capacity(lists.len() + 1);
        let mut items = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for mut list in lists {
            list.sort_unstable();
            list.dedup();
            starts.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
            items.extend(list);
        }
        starts.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
        Groups { starts, items }
    }

    #[inline]
    pub fn get(&self, id: usize) -> &[u32] {
        match (self.starts.get(id), self.starts.get(id + 1)) {
            (Some(&start), Some(&end)) => {
                self.items.get(start as usize..end as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }
}

/// Assigns dense ids to distinct keys, keeping for each the numbers given with it.
#[derive(Debug)]
pub struct Grouping<K> {
    ids: std::collections::HashMap<K, usize>,
    pub keys: Vec<K>,
    lists: Vec<Vec<u32>>,
}

impl<K: std::hash::Hash + Eq + Clone> Grouping<K> {
    pub fn new() -> Self {
        Grouping {
            ids: std::collections::HashMap::new(),
            keys: Vec::new(),
            lists: Vec::new(),
        }
    }

    /// Adds `item` to `key`'s list; the key's id.
    pub fn add(&mut self, key: K, item: u32) -> usize {
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.keys.len();
                self.ids.insert(key.clone(), id);
                self.keys.push(key);
                self.lists.push(Vec::new());
                id
            }
        };
        self.lists[id].push(item);
        id
    }

    pub fn finish(self) -> (Vec<K>, Groups) {
        (self.keys, Groups::build(self.lists))
    }
}

impl<K: std::hash::Hash + Eq + Clone> Default for Grouping<K> {
    fn default() -> Self {
        Self::new()
    }
}
