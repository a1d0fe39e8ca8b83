//! The Wing–Gong / Lowe search for one partition, with Porcupine's memoization.
//!
//! Calls and returns form one list sorted by time (a call sorts before a return at the same
//! time: intervals are closed). Ops whose output is unknown return at +infinity. Depth-first: at
//! a call, try to linearize the op now; if the model allows it and (set of linearized ops, state)
//! was never seen, lift the op's call and return out of the list and restart from the head. At
//! the return of an op not yet linearized, backtrack. Reaching an infinite return means every op
//! that completed is linearized: the history is linearizable.
//!
//! The memo key is a Zobrist hash of the linearized set (updated in O(1) per step) xor the state's
//! hash; entries compare the exact bitset and state. The list is an index-based doubly linked
//! list: no allocation per step.

use super::Call;
use crate::model::Model;
use rustc_hash::FxHasher;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

/// Limits shared by every partition of one check.
pub struct Budget {
    /// Stop with `unknown` after this instant.
    pub deadline: Option<Instant>,
    /// Stop with `unknown` when the process's resident memory, measured, would exceed this many
    /// bytes (where it cannot be measured: when the memo tables together would).
    pub memory_limit: usize,
    /// Bytes the memo tables hold now (reported with the measured figure).
    pub memory_used: AtomicUsize,
    /// Set to stop every search early (another partition already failed).
    pub cancel: AtomicBool,
}

/// How the search of one partition ended.
pub enum Outcome<S> {
    /// Some order of the ops is legal.
    Linearizable,
    /// No order is.
    Illegal(Failure<S>),
    /// The budget ran out or the search was cancelled, for the given reason.
    Aborted(String),
}

/// The evidence for an illegal partition.
pub struct Failure<S> {
    /// The longest legal order found: call positions and the state after each.
    pub prefix: Vec<(usize, S)>,
    /// The op whose return was reached without any legal way to linearize it after that prefix.
    pub blocked: usize,
}

/// Passes hashes through: memo keys are already well-mixed 64-bit hashes.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn state_hash<S: Hash>(s: &S) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    splitmix(h.finish())
}

/// The set of explored configurations: (linearized set, state) pairs, in flat arenas so that
/// an insertion allocates nothing but amortized growth.
struct Memo<S> {
    /// Hash of a configuration -> its newest entry.
    table: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    /// Entry -> the previous entry with the same hash.
    chain: Vec<u32>,
    /// `words` bitset words per entry.
    bits: Vec<u64>,
    states: Vec<S>,
    words: usize,
    entry_bytes: usize,
}

impl<S: Eq + Clone> Memo<S> {
    fn new(words: usize) -> Self {
        Memo {
            table: HashMap::default(),
            chain: Vec::new(),
            bits: Vec::new(),
            states: Vec::new(),
            words,
            entry_bytes: words * 8 + std::mem::size_of::<S>() + 4 + 24,
        }
    }

    fn bytes(&self) -> usize {
        self.states.len() * self.entry_bytes
    }

    /// Bytes the next insertion may allocate at once: the arenas and the table double when full.
    fn growth(&self) -> usize {
        // A vector that must grow to hold `more` allocates at least twice its capacity.
        let grow = |len: usize, cap: usize, more: usize, size: usize| {
            if len + more > cap { (2 * cap).max(len + more).max(4) * size } else { 0 }
        };
        grow(self.states.len(), self.states.capacity(), 1, std::mem::size_of::<S>())
            + grow(self.bits.len(), self.bits.capacity(), self.words, 8)
            + grow(self.chain.len(), self.chain.capacity(), 1, 4)
            // The table's buckets: a key, a value and a control byte, at most 7/8 full.
            + grow(self.table.len(), self.table.capacity(), 1, 8 * 13 / 7)
    }

    /// Makes room for one more entry, or says that the allocator refused it.
    fn reserve(&mut self) -> Result<(), std::collections::TryReserveError> {
        self.bits.try_reserve(self.words)?;
        self.states.try_reserve(1)?;
        self.chain.try_reserve(1)?;
        self.table.try_reserve(1)
    }

    /// Inserts (bits, state) unless present; returns whether it was new. Call [`Memo::reserve`]
    /// first, so that it allocates nothing.
    fn insert(&mut self, hash: u64, bits: &[u64], state: &S) -> bool {
        let head = self.table.get(&hash).copied().unwrap_or(NIL);
        let mut i = head;
        while i != NIL {
            let at = i as usize;
            if self.bits[at * self.words..(at + 1) * self.words] == *bits && self.states[at] == *state {
                return false;
            }
            i = self.chain[at];
        }
        let id = self.states.len() as u32;
        self.bits.extend_from_slice(bits);
        self.states.push(state.clone());
        self.chain.push(head);
        self.table.insert(hash, id);
        true
    }
}

/// Searches one partition. `calls` are in any order; `budget` bounds time and memory.
pub fn search<M: Model>(model: &M, calls: &[Call<M::Op>], budget: &Budget) -> Outcome<M::State> {
    let n = calls.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Nodes: 0 is the head; call of op i is 2i+1, its return 2i+2.
    let mut order: Vec<u32> = (1..=2 * n as u32).collect();
    let time = |node: u32| {
        let c = &calls[((node - 1) / 2) as usize];
        if node % 2 == 1 { (c.call, 0u8) } else { (c.ret.unwrap_or(u64::MAX), 1u8) }
    };
    order.sort_by_key(|&node| (time(node), node));
    let mut list = List { next: vec![NIL; 2 * n + 1], prev: vec![NIL; 2 * n + 1] };
    let mut last = HEAD;
    for &node in &order {
        list.next[last as usize] = node;
        list.prev[node as usize] = last;
        last = node;
    }

    let zobrist: Vec<u64> = (0..n as u64).map(|i| splitmix(i ^ 0x5eed)).collect();
    let mut bits = vec![0u64; n.div_ceil(64)];
    let mut bits_hash = 0u64;
    let mut memo: Memo<M::State> = Memo::new(bits.len());
    let mut state = model.init();
    // (call node, state before it, whether it was a read committed at once)
    let mut stack: Vec<(u32, M::State, bool)> = Vec::new();
    let mut best: Option<Failure<M::State>> = None;
    let mut entry = list.next[HEAD as usize];
    let mut steps: u64 = 0;
    let mut reported = 0;
    let mut resident = measured_resident();

    let outcome = 'search: loop {
        steps += 1;
        if steps.is_multiple_of(4096) {
            let bytes = memo.bytes();
            budget.memory_used.fetch_add(bytes - reported, Ordering::Relaxed);
            reported = bytes;
            resident = measured_resident();
            if let Some(reason) = exhausted(budget, bytes, resident) {
                break Outcome::Aborted(reason);
            }
        }
        if entry == NIL {
            break Outcome::Linearizable;
        }
        let op = ((entry - 1) / 2) as usize;
        if entry % 2 == 1 {
            // A call: try to linearize the op here.
            let Some(new_state) = model.step(&state, &calls[op].op) else {
                entry = list.next[entry as usize];
                continue;
            };
            let read = model.is_read_only(&calls[op].op);
            if let Err(reason) = room(&mut memo, budget, resident) {
                break Outcome::Aborted(reason);
            }
            bits[op / 64] |= 1 << (op % 64);
            let h = bits_hash ^ zobrist[op];
            if memo.insert(h ^ state_hash(&new_state), &bits, &new_state) {
                if stack.try_reserve(1).is_err() {
                    break Outcome::Aborted(refused(resident));
                }
                stack.push((entry, std::mem::replace(&mut state, new_state), read));
                bits_hash = h;
                list.lift(entry);
                list.lift(entry + 1);
                entry = list.next[HEAD as usize];
                continue;
            }
            bits[op / 64] &= !(1 << (op % 64));
            if !read {
                entry = list.next[entry as usize];
                continue;
            }
            // A legal read whose configuration was already explored: that configuration failed,
            // and it is as good as this one, so this one fails too.
        } else {
            // The return of an op that is not linearized yet.
            if calls[op].ret.is_none() {
                break Outcome::Linearizable; // only unknown outcomes remain: they may never have happened
            }
            if best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                best = Some(Failure { prefix: prefix_of(&stack, &state), blocked: op });
            }
        }
        // Backtrack: undo the newest choice; a committed read offers no alternative, so undo past it.
        loop {
            let Some((call_node, before, read)) = stack.pop() else {
                let failure = best.take().unwrap_or(Failure { prefix: Vec::new(), blocked: op });
                break 'search Outcome::Illegal(failure);
            };
            let undone = ((call_node - 1) / 2) as usize;
            state = before;
            bits[undone / 64] &= !(1 << (undone % 64));
            bits_hash ^= zobrist[undone];
            list.unlift(call_node + 1);
            list.unlift(call_node);
            if !read {
                entry = list.next[call_node as usize];
                break;
            }
        }
    };
    budget.memory_used.fetch_sub(reported, Ordering::Relaxed);
    outcome
}

/// The index-based doubly linked list of call and return nodes.
struct List {
    next: Vec<u32>,
    prev: Vec<u32>,
}

impl List {
    fn lift(&mut self, node: u32) {
        let (p, q) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = q;
        if q != NIL {
            self.prev[q as usize] = p;
        }
    }

    /// Undoes [`List::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, node: u32) {
        let (p, q) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        if q != NIL {
            self.prev[q as usize] = node;
        }
    }
}

/// The process's resident memory in bytes, measured (`VmRSS`); `None` where it cannot be.
pub fn measured_resident() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
    kb.parse::<usize>().ok().map(|kb| kb << 10)
}

fn exhausted(budget: &Budget, partition_bytes: usize, resident: Option<usize>) -> Option<String> {
    if budget.cancel.load(Ordering::Relaxed) {
        return Some("cancelled: another partition already failed".into());
    }
    if budget.deadline.is_some_and(|d| Instant::now() >= d) {
        return Some("time budget exhausted (--timeout)".into());
    }
    let memo = budget.memory_used.load(Ordering::Relaxed);
    if resident.unwrap_or(memo) > budget.memory_limit {
        return Some(over_budget(budget, resident, memo, partition_bytes));
    }
    None
}

fn over_budget(budget: &Budget, resident: Option<usize>, memo: usize, partition_bytes: usize) -> String {
    let measured = resident.map_or_else(|| "not measurable here".to_owned(), |r| format!("{} MiB", r >> 20));
    format!(
        "memory budget exhausted: limit {} MiB, resident memory {measured}, search memo {} MiB ({} MiB in this partition)",
        budget.memory_limit >> 20,
        memo >> 20,
        partition_bytes >> 20
    )
}

fn refused(resident: Option<usize>) -> String {
    let measured = resident.map_or_else(|| "not measurable here".to_owned(), |r| format!("{} MiB", r >> 20));
    format!("memory exhausted: the allocator refused the search more memory (resident {measured})")
}

/// Makes room in the memo for one entry when the budget allows what that allocates.
fn room<S: Eq + Clone>(memo: &mut Memo<S>, budget: &Budget, resident: Option<usize>) -> Result<(), String> {
    let growth = memo.growth();
    if growth > 0 {
        let memo_total = budget.memory_used.load(Ordering::Relaxed);
        let base = resident.unwrap_or(memo_total);
        if base + growth > budget.memory_limit {
            let why = over_budget(budget, resident, memo_total, memo.bytes());
            return Err(format!("{why}; the memo's next growth needs {} MiB more", growth >> 20));
        }
    }
    memo.reserve().map_err(|_| refused(resident))
}

/// The stack as (op, state after it), oldest first.
fn prefix_of<S: Clone>(stack: &[(u32, S, bool)], current: &S) -> Vec<(usize, S)> {
    let mut out = Vec::with_capacity(stack.len());
    for (i, (node, _, _)) in stack.iter().enumerate() {
        let after = stack.get(i + 1).map_or(current, |(_, before, _)| before);
        out.push((((node - 1) / 2) as usize, after.clone()));
    }
    out
}
