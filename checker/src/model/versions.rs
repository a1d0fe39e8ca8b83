//! The models' partitions as versions, for the version-order decision
//! ([`crate::linear::order`]): which op produced each state, which state it replaced, and which
//! ops observed it. Each function returns [`Derivation::Search`] where values repeat or a read
//! could name more than one state.

use super::Val;
use super::log::LogOp;
use super::register::RegisterOp;
use crate::linear::Call;
use crate::linear::order::{Derivation, Link, Version, Versions, Violation};
use rustc_hash::FxHashMap;

/// Early exits of the builders, as the derivation they end with.
type Built<T> = Result<T, Derivation>;

fn repeat(value: &dyn std::fmt::Display) -> Derivation {
    Derivation::Search(format!("the value {value} is written more than once"))
}

fn never(op: usize) -> Derivation {
    Derivation::Illegal(Violation::NeverWritten { op })
}

/// Registers (read, write, cas) with `init`; a partition with appends goes to [`appends`].
pub(super) fn registers(init: &Option<Val>, calls: &[Call<RegisterOp>]) -> Derivation {
    if calls.iter().any(|c| matches!(c.op, RegisterOp::Append(..))) {
        return appends(init, calls);
    }
    registers_of(init, calls).unwrap_or_else(|d| d)
}

fn registers_of(init: &Option<Val>, calls: &[Call<RegisterOp>]) -> Built<Derivation> {
    let mut nodes = Vec::with_capacity(calls.len() + 1);
    nodes.push(Version::default());
    let mut by_value: FxHashMap<Option<&Val>, usize> = FxHashMap::default();
    by_value.insert(init.as_ref(), 0);
    for (i, c) in calls.iter().enumerate() {
        let (RegisterOp::Write(v) | RegisterOp::Cas(_, v)) = &c.op else { continue };
        if by_value.insert(Some(v), nodes.len()).is_some() {
            return Err(repeat(v));
        }
        nodes.push(Version { creator: Some(i), ..Version::default() });
    }
    for (i, c) in calls.iter().enumerate() {
        let RegisterOp::Read(v) = &c.op else { continue };
        let version = *by_value.get(&v.as_ref()).ok_or_else(|| never(i))?;
        nodes[version].readers.push(i);
    }
    for (i, c) in calls.iter().enumerate() {
        let RegisterOp::Cas(from, to) = &c.op else { continue };
        let version = by_value[&Some(to)];
        // A cas from its own value needs a state only it produces: as if never written.
        match by_value.get(&from.as_ref()).filter(|&&p| p != version) {
            Some(&p) => nodes[version].link = Link::After(p),
            // A crashed cas from a value never written did not happen, unless something saw its
            // value: detach its version (if a cas took the state from it, that one is unreachable).
            None if c.ret.is_none() && nodes[version].readers.is_empty() => nodes[version].link = Link::Detached,
            None => return Err(never(i)),
        }
    }
    Ok(Derivation::Versions(Versions { nodes, loose: Vec::new() }))
}

/// A key of strings with puts and appends: a read returns the put it started from and every
/// append since, which names its version and the order of those appends.
fn appends(init: &Option<Val>, calls: &[Call<RegisterOp>]) -> Derivation {
    let Some(Val::Str(init)) = init else {
        return Derivation::Search("appends to a register that does not start as a string".into());
    };
    let mut parser = Appends::new(init, calls.len());
    for (i, c) in calls.iter().enumerate() {
        let added = match &c.op {
            RegisterOp::Write(Val::Str(s)) => parser.heads.add(s, i),
            RegisterOp::Append(Val::Str(s)) => parser.tokens.add(s, i),
            RegisterOp::Read(..) => Ok(()),
            _ => Err(Derivation::Search("appends mixed with cas or integer values".into())),
        };
        if let Err(d) = added {
            return d;
        }
    }
    parser.run(calls).unwrap_or_else(|d| d)
}

/// Strings that name ops, with their distinct lengths (ascending; a handful), so that a read
/// can be cut into them.
#[derive(Default)]
struct Names<'a> {
    by_name: FxHashMap<&'a str, usize>,
    lengths: Vec<usize>,
}

impl<'a> Names<'a> {
    fn with_capacity(n: usize) -> Self {
        Names { by_name: FxHashMap::with_capacity_and_hasher(n, Default::default()), lengths: Vec::new() }
    }

    fn add(&mut self, name: &'a str, op: usize) -> Built<()> {
        if self.by_name.insert(name, op).is_some() {
            return Err(repeat(&format!("{name:?}")));
        }
        if let Err(at) = self.lengths.binary_search(&name.len()) {
            self.lengths.insert(at, name.len());
        }
        Ok(())
    }

    /// The names `s` starts with at `at`.
    fn at(&self, s: &str, at: usize) -> impl Iterator<Item = (usize, usize)> {
        let rest = &s[at..];
        self.lengths.iter().filter_map(move |&l| rest.get(..l).and_then(|p| self.by_name.get(p)).map(|&op| (op, l)))
    }
}

/// Builds versions from reads of appended strings.
struct Appends<'a> {
    /// Puts, and the initial value as op `usize::MAX`.
    heads: Names<'a>,
    tokens: Names<'a>,
}

const INIT: usize = usize::MAX;

impl<'a> Appends<'a> {
    /// For a partition of `n` ops.
    fn new(init: &'a str, n: usize) -> Self {
        let mut heads = Names::default();
        heads.by_name.insert(init, INIT);
        heads.lengths.push(init.len());
        Appends { heads, tokens: Names::with_capacity(n) }
    }

    /// The only way to cut `s` into a head and appended tokens (left in `appended`): `Ok(None)`
    /// when there is none. `walk` is scratch space, kept by the caller to save allocations.
    fn cut(&self, s: &str, appended: &mut Vec<usize>, walk: &mut Vec<usize>) -> Built<Option<usize>> {
        let mut found = None;
        for (head, len) in self.heads.at(s, 0) {
            walk.clear();
            let mut at = len;
            while at < s.len() {
                let mut next = self.tokens.at(s, at);
                let Some((op, l)) = next.next() else { break };
                if next.next().is_some() {
                    return Err(Derivation::Search(format!("the read value {s:?} can be cut in more than one way")));
                }
                walk.push(op);
                at += l;
            }
            if at == s.len() {
                if found.is_some() {
                    return Err(Derivation::Search(format!("the read value {s:?} can be cut in more than one way")));
                }
                found = Some(head);
                std::mem::swap(appended, walk);
            }
        }
        Ok(found)
    }

    fn run(&self, calls: &[Call<RegisterOp>]) -> Built<Derivation> {
        // Versions: the initial one, then one per put and per append, in op order.
        let mut version_of = vec![usize::MAX; calls.len()];
        let mut nodes = Vec::with_capacity(calls.len() + 1);
        nodes.push(Version::default());
        for (i, c) in calls.iter().enumerate() {
            if !matches!(c.op, RegisterOp::Read(..)) {
                version_of[i] = nodes.len();
                nodes.push(Version { creator: Some(i), ..Version::default() });
            }
        }
        // For each append, the read that first named what it followed.
        let mut named_by = vec![usize::MAX; calls.len()];
        // Reads that returned the very same string name the same version: cut each string once.
        let mut seen: FxHashMap<&str, usize> = FxHashMap::with_capacity_and_hasher(calls.len(), Default::default());
        let (mut appended, mut walk) = (Vec::new(), Vec::new());
        for (i, c) in calls.iter().enumerate() {
            let RegisterOp::Read(v) = &c.op else { continue };
            let Some(Val::Str(s)) = v else { return Err(never(i)) };
            if let Some(&version) = seen.get(&**s) {
                nodes[version].readers.push(i);
                continue;
            }
            let head = self.cut(s, &mut appended, &mut walk)?.ok_or_else(|| never(i))?;
            let mut at = if head == INIT { 0 } else { version_of[head] };
            for &op in &appended {
                let v = version_of[op];
                match nodes[v].link {
                    Link::Head => {
                        nodes[v].link = Link::After(at);
                        named_by[op] = i;
                    }
                    Link::After(p) if p == at => {}
                    _ => return Err(Derivation::Illegal(Violation::Diverged { op, reads: [named_by[op], i] })),
                }
                at = v;
            }
            seen.insert(s, at);
            nodes[at].readers.push(i);
        }
        // Appends no read returned: acknowledged ones follow some segment's end, crashed ones may
        // never have happened. Either way they are not versions of any chain.
        let mut loose = Vec::new();
        for (i, c) in calls.iter().enumerate() {
            if matches!(c.op, RegisterOp::Append(..)) && nodes[version_of[i]].link == Link::Head {
                nodes[version_of[i]].link = Link::Detached;
                if c.ret.is_some() {
                    loose.push(i);
                }
            }
        }
        Ok(Derivation::Versions(Versions { nodes, loose }))
    }
}

/// The broker's log: the version of length `k + 1` is made by the append at offset `k`, known
/// from its acknowledgement or from a read that returned its record.
pub(super) fn log(calls: &[Call<LogOp>]) -> Derivation {
    log_of(calls).unwrap_or_else(|d| d)
}

fn log_of(calls: &[Call<LogOp>]) -> Built<Derivation> {
    let mut by_value: FxHashMap<&Val, usize> = FxHashMap::default();
    for (i, c) in calls.iter().enumerate() {
        if let LogOp::Append { value, .. } = &c.op
            && by_value.insert(value, i).is_some()
        {
            return Err(repeat(value));
        }
    }
    // The log starts empty and each append adds one record: no offset or length reaches past the
    // appends. Past the calls (more than the appends, so the other checks still name what they
    // find below that) one is refused before anything is sized by it.
    let longest = calls.len() as u64;
    // The op at each offset.
    let mut slots: Vec<Option<usize>> = Vec::new();
    let mut fill = |offset: u64, op: usize, witness: usize| -> Built<()> {
        let o = usize::try_from(offset).ok().filter(|_| offset < longest).ok_or_else(|| never(witness))?;
        if slots.len() <= o {
            slots.resize(o + 1, None);
        }
        match slots[o] {
            None => slots[o] = Some(op),
            Some(other) if other == op => {}
            Some(other) => {
                return Err(Derivation::Illegal(Violation::ConsumedTwice { version: None, ops: [other, witness] }));
            }
        }
        Ok(())
    };
    let mut length = 0u64;
    for (i, c) in calls.iter().enumerate() {
        match &c.op {
            LogOp::Append { offset: Some(o), .. } => fill(*o, i, i)?,
            LogOp::Read { from, values, hw, .. } => {
                if from.saturating_add(values.len() as u64) > *hw || *hw > longest {
                    return Err(never(i));
                }
                length = length.max(*hw);
                for (k, v) in values.iter().enumerate() {
                    let op = *by_value.get(v).ok_or_else(|| never(i))?;
                    fill(from + k as u64, op, i)?;
                }
            }
            LogOp::Append { offset: None, .. } => {}
        }
    }
    versions_of_log(calls, slots, length)
}

fn versions_of_log(calls: &[Call<LogOp>], mut slots: Vec<Option<usize>>, length: u64) -> Built<Derivation> {
    let length = usize::try_from(length).unwrap_or(usize::MAX).max(slots.len());
    if slots.len() < length {
        slots.resize(length, None);
    }
    // An op at two offsets: an acknowledged append read elsewhere, or a record read twice.
    let mut offset_of = vec![usize::MAX; calls.len()];
    for (o, op) in slots.iter().enumerate() {
        let Some(op) = *op else {
            return Err(Derivation::Search(format!("no op accounts for the record at offset {o}")));
        };
        if offset_of[op] != usize::MAX {
            return Err(Derivation::Illegal(Violation::TwoPlaces { op, offsets: [offset_of[op], o] }));
        }
        offset_of[op] = o;
    }
    let mut nodes: Vec<Version> = vec![Version::default()];
    nodes.extend(slots.iter().enumerate().map(|(o, op)| Version {
        creator: *op,
        link: Link::After(o),
        readers: Vec::new(),
    }));
    for (i, c) in calls.iter().enumerate() {
        if let LogOp::Read { hw, .. } = c.op {
            nodes[hw as usize].readers.push(i);
        }
    }
    Ok(Derivation::Versions(Versions { nodes, loose: Vec::new() }))
}
