//! The prefix cache: model states keyed by the token ids they have read, evicted least
//! recently used first within a byte budget.
//!
//! A state holds the keys and values of every position, the next-token log-probabilities
//! after the last one, and the log-probability of the ids after the first. Any query finds
//! the longest cached prefix of its ids and runs only the rest, so a prompt is computed once
//! for all the samples drawn after it, and a sweep that extends a prompt unit by unit extends
//! the previous state instead of starting over.

use std::rc::Rc;

use super::transformer::KvState;

/// What the model knows after reading some token ids.
#[derive(Clone, Debug)]
pub struct State {
    pub kv: KvState,
    /// log P(next token | ids), f64, over the model's vocabulary.
    pub next: Rc<Vec<f64>>,
    /// log P(ids[1..] | ids[0]): the sum of the conditionals read so far.
    pub cumulative: f64,
}

impl State {
    fn bytes(&self) -> usize {
        self.kv.bytes() + self.next.len() * 8
    }
}

struct Entry {
    key: Rc<[u32]>,
    state: State,
    bytes: usize,
    used: u64,
}

/// An LRU of states within `budget` bytes (0 disables caching).
pub struct PrefixCache {
    entries: Vec<Entry>,
    budget: usize,
    used_bytes: usize,
    clock: u64,
    pub hits: u64,
    pub misses: u64,
}

impl PrefixCache {
    pub fn new(budget: usize) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            budget,
            used_bytes: 0,
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The byte budget it was made with.
    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The longest cached prefix of `ids` (at least `min_len` long): its length and state.
    pub fn longest_prefix(&mut self, ids: &[u32], min_len: usize) -> Option<(usize, State)> {
        self.clock += 1;
        let mut best: Option<usize> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let n = e.key.len();
            if n >= min_len.max(1)
                && n <= ids.len()
                && best.is_none_or(|b| self.entries[b].key.len() < n)
                && *e.key == ids[..n]
            {
                best = Some(i);
            }
        }
        match best {
            Some(i) => {
                self.hits += 1;
                let e = &mut self.entries[i];
                e.used = self.clock;
                Some((e.key.len(), e.state.clone()))
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keep `state` for `ids`, evicting the least recently used entries over the budget.
    pub fn insert(&mut self, ids: &[u32], state: &State) {
        let bytes = state.bytes();
        if bytes > self.budget {
            return;
        }
        self.clock += 1;
        if let Some(e) = self.entries.iter_mut().find(|e| *e.key == *ids) {
            e.used = self.clock;
            return;
        }
        while self.used_bytes + bytes > self.budget {
            let Some((oldest, _)) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.used)
            else {
                break;
            };
            let e = self.entries.swap_remove(oldest);
            self.used_bytes -= e.bytes;
        }
        self.used_bytes += bytes;
        self.entries.push(Entry {
            key: Rc::from(ids),
            state: state.clone(),
            bytes,
            used: self.clock,
        });
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.used_bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
