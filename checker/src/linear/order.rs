//! The version-order decision: linearizability without a search, for partitions whose written
//! values are unique.
//!
//! When every write produces a value no other op produces, a read names the version it observed,
//! and a model describes a partition as [`Versions`]: the initial state, the versions each
//! state-changing op created, which version each op consumed (a cas, an append, a log append at
//! its offset) and which ops observed each version. The versions then form chains ("segments"),
//! each headed by the initial state or by a blind write; a chain's order is fixed, and every
//! linearization places each segment contiguously (between two of its versions no other write can
//! come, or the later version would differ). Only the order of segments is open.
//!
//! [`decide`] (after Gibbons and Korach's zones for read/write registers, generalized to chains):
//! 1. two ops consuming one version, or versions no segment reaches, are violations;
//! 2. a segment `A` must wholly precede `B` when an op of `A` returned before an op of `B` was
//!    invoked; two segments that must each precede the other are a violation (a 2-cycle: every
//!    cycle of this interval relation contains one);
//! 3. otherwise segments are ordered by the midpoint of their zone (a linear extension of that
//!    relation) and every op placed as early as its interval and the order allow. Success is a
//!    witness: the history is linearizable. A failure whose chain of causes uses only forced
//!    orders is a proof (a cycle of ops); any other failure is left to the search.
//!
//! Ops that crashed (`info`) and that nobody observed, directly or through a later version, are
//! dropped: an unobserved write that never happened changes no read.

use std::cmp::Reverse;

/// One op as the decision sees it: its interval, `ret: None` when its outcome is unknown.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Invocation time.
    pub call: u64,
    /// Completion time; `None`: unknown outcome, the op may take effect at any time after `call`.
    pub ret: Option<u64>,
}

/// One state of a partition.
#[derive(Debug, Clone, Default)]
pub struct Version {
    /// The op that produced it; `None` for the initial state.
    pub creator: Option<usize>,
    /// Where it stands among the versions.
    pub link: Link,
    /// Ops that observed it without changing it.
    pub readers: Vec<usize>,
}

/// How a version relates to the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Link {
    /// It may follow any version: the initial state, or a blind write's.
    #[default]
    Head,
    /// Its creator replaced this version (a cas from it, an append to it).
    After(usize),
    /// In no chain: its creator is one of the [`Versions::loose`] ops, or did not take effect.
    Detached,
}

/// A partition described by its versions. `nodes[0]` is the initial state.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    /// Every version.
    pub nodes: Vec<Version>,
    /// State-changing ops nobody observed whose position is free except that they follow the
    /// initial segment (an acknowledged append no read returned).
    pub loose: Vec<usize>,
}

/// Why a partition is not linearizable, from the model's description or from [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// `op` observed or consumed a state no op (and not the initial state) produced.
    NeverWritten {
        /// The op.
        op: usize,
    },
    /// Two ops each replaced the same version, which exists once.
    ConsumedTwice {
        /// The creator of the version, `None` for the initial state.
        version: Option<usize>,
        /// The two ops.
        ops: [usize; 2],
    },
    /// `op` took effect once, yet its record is seen at two offsets of a log.
    TwoPlaces {
        /// The append.
        op: usize,
        /// The two offsets.
        offsets: [usize; 2],
    },
    /// Two reads disagree on which state `op` appended to.
    Diverged {
        /// The append.
        op: usize,
        /// The read that first showed it, and the one that shows it elsewhere.
        reads: [usize; 2],
    },
    /// Versions that follow one another in a loop, reachable from no write.
    Unreachable {
        /// The creators of the looping versions.
        ops: Vec<usize>,
    },
    /// A cycle of orders: each op must precede the next (the same chain of versions, or chains
    /// that must follow one another), yet the last op returned before the first was invoked.
    Cycle {
        /// The ops, first to last.
        ops: Vec<usize>,
    },
    /// Two chains of versions that must each wholly precede the other: `ab[0]` returned before
    /// `ab[1]` was invoked, and `ba[0]` before `ba[1]`. `ab` is `None` when `ba[1]` observed the
    /// initial state, which precedes every write.
    Interleaved {
        /// An op of the first chain, and one of the second invoked after it returned.
        ab: Option<[usize; 2]>,
        /// An op of the second chain, and one of the first invoked after it returned.
        ba: [usize; 2],
    },
}

/// The outcome of [`decide`] for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A linearization exists (one was built).
    Linearizable,
    /// No linearization exists.
    Illegal(Violation),
    /// The decision cannot tell without choosing among orders: run the search.
    Search(String),
}

/// What a model says about one partition before deciding.
#[derive(Debug, Clone)]
pub enum Derivation {
    /// The partition as versions.
    Versions(Versions),
    /// Already a violation (a read of a value never written, a record at two places).
    Illegal(Violation),
    /// The fast path does not apply (values repeat, an ambiguous read); why.
    Search(String),
}

/// A contiguous chain of versions, and the zone its ops span.
struct Segment {
    /// The ops in linearization order, grouped: each group is a creator (if any) and its readers.
    groups: Vec<(Option<usize>, Vec<usize>)>,
    /// The earliest return of its ops (`u64::MAX` when none returned) and the op.
    first_ret: (u64, usize),
    /// The latest invocation of its ops, and the op.
    last_call: (u64, usize),
}

/// Decides one partition described by `versions`; `spans[i]` is op `i`'s interval.
pub fn decide(spans: &[Span], mut versions: Versions) -> Decision {
    let alive = drop_unobserved(spans, &versions);
    let segments = match segments(spans, &mut versions, &alive) {
        Ok(s) => s,
        Err(v) => return Decision::Illegal(v),
    };
    if let Some(cycle) = two_cycle(&segments) {
        return Decision::Illegal(cycle);
    }
    match place(spans, &segments) {
        Ok(()) => Decision::Linearizable,
        Err(d) => d,
    }
}

/// The versions that must exist: the initial one, those observed or made by an acknowledged op,
/// and every version those follow. The rest were made by crashed ops nobody observed, directly or
/// through a later version: they may never have existed.
fn drop_unobserved(spans: &[Span], v: &Versions) -> Vec<bool> {
    let mut alive = vec![false; v.nodes.len()];
    for (i, node) in v.nodes.iter().enumerate() {
        let needed = i == 0 || !node.readers.is_empty() || node.creator.is_some_and(|c| spans[c].ret.is_some());
        let mut at = needed.then_some(i);
        while let Some(j) = at.filter(|&j| !alive[j]) {
            alive[j] = true;
            at = match v.nodes[j].link {
                Link::After(p) => Some(p),
                Link::Head | Link::Detached => None,
            };
        }
    }
    alive
}

/// The chains of live versions, the initial one first, then the loose ops as segments of one op.
/// The versions' readers move into the segments.
fn segments(spans: &[Span], v: &mut Versions, alive: &[bool]) -> Result<Vec<Segment>, Violation> {
    let n = v.nodes.len();
    let mut child: Vec<Option<usize>> = vec![None; n];
    for (i, node) in v.nodes.iter().enumerate().filter(|(i, _)| alive[*i]) {
        let Link::After(p) = node.link else { continue };
        if let Some(other) = child[p] {
            let ops = [v.nodes[other].creator, node.creator].map(|c| c.expect("a child version has a creator"));
            return Err(Violation::ConsumedTwice { version: v.nodes[p].creator, ops });
        }
        child[p] = Some(i);
    }
    let mut reached = vec![false; n];
    let heads: Vec<usize> = (0..n).filter(|&i| alive[i] && (i == 0 || v.nodes[i].link == Link::Head)).collect();
    let mut out = Vec::with_capacity(heads.len() + v.loose.len());
    for head in heads {
        let mut groups = Vec::new();
        let mut at = Some(head);
        while let Some(i) = at {
            reached[i] = true;
            groups.push((v.nodes[i].creator, std::mem::take(&mut v.nodes[i].readers)));
            at = child[i];
        }
        out.push(segment(spans, groups));
    }
    let mut is_loose = vec![false; spans.len()];
    v.loose.iter().for_each(|&op| is_loose[op] = true);
    let loose = |i: usize| v.nodes[i].link == Link::Detached && v.nodes[i].creator.is_some_and(|c| is_loose[c]);
    let unreached: Vec<usize> =
        (0..n).filter(|&i| alive[i] && !reached[i] && !loose(i)).filter_map(|i| v.nodes[i].creator).collect();
    if !unreached.is_empty() {
        return Err(Violation::Unreachable { ops: unreached });
    }
    out.extend(
        v.loose.iter().filter(|&&op| spans[op].ret.is_some()).map(|&op| segment(spans, vec![(Some(op), vec![])])),
    );
    Ok(out)
}

fn segment(spans: &[Span], groups: Vec<(Option<usize>, Vec<usize>)>) -> Segment {
    let ops = || groups.iter().flat_map(|(c, r)| c.iter().chain(r)).copied();
    // No ops (the initial state nobody read): it returns never and is invoked at time 0.
    let first_ret = ops().map(|op| (spans[op].ret.unwrap_or(u64::MAX), op)).min().unwrap_or((u64::MAX, usize::MAX));
    let last_call = ops().map(|op| (spans[op].call, op)).max().unwrap_or((0, usize::MAX));
    Segment { groups, first_ret, last_call }
}

/// Whether segment `a` must wholly precede segment `b`: an op of `a` returned before an op of `b`
/// was invoked. The initial segment precedes every other (so a segment that must precede it is
/// a violation).
fn must_precede(segments: &[Segment], a: usize, b: usize) -> bool {
    a == 0 || segments[a].first_ret.0 < segments[b].last_call.0
}

/// Two segments that must each precede the other, found in O(n log n): sorted by earliest
/// return, the segments that must precede `b` are a prefix; the one with the latest invocation
/// among them (other than `b`) is the only candidate for `b` to have to precede.
fn two_cycle(segments: &[Segment]) -> Option<Violation> {
    let first_ret = |i: usize| if i == 0 { 0 } else { segments[i].first_ret.0 };
    // Segments without ops (the initial state nobody read) order nothing.
    let mut by_ret: Vec<usize> = (0..segments.len()).filter(|&i| segments[i].last_call.1 != usize::MAX).collect();
    by_ret.sort_by_key(|&i| (first_ret(i), i));
    // The two latest invocations among each prefix, with their segments.
    let mut top: Vec<[Option<(u64, usize)>; 2]> = Vec::with_capacity(by_ret.len());
    let mut best: [Option<(u64, usize)>; 2] = [None, None];
    for &i in &by_ret {
        let c = Some((segments[i].last_call.0, i));
        if c > best[0] {
            best = [c, best[0]];
        } else if c > best[1] {
            best[1] = c;
        }
        top.push(best);
    }
    for &b in &by_ret {
        let before = by_ret.partition_point(|&a| first_ret(a) < segments[b].last_call.0);
        let Some(pair) = before.checked_sub(1).map(|k| top[k]) else { continue };
        let Some((_, a)) = pair.into_iter().flatten().find(|&(_, a)| a != b) else { continue };
        if must_precede(segments, a, b) && must_precede(segments, b, a) {
            let (sa, sb) = (&segments[a], &segments[b]);
            // The initial segment precedes every other by definition: one edge of time suffices.
            let violation = match (a, b) {
                (0, _) => Violation::Interleaved { ab: None, ba: [sb.first_ret.1, sa.last_call.1] },
                (_, 0) => Violation::Interleaved { ab: None, ba: [sa.first_ret.1, sb.last_call.1] },
                _ => Violation::Interleaved {
                    ab: Some([sa.first_ret.1, sb.last_call.1]),
                    ba: [sb.first_ret.1, sa.last_call.1],
                },
            };
            return Some(violation);
        }
    }
    None
}

/// Places every op as early as possible, segments in the order of their zone's midpoint.
fn place(spans: &[Span], segments: &[Segment]) -> Result<(), Decision> {
    let mut order: Vec<usize> = (1..segments.len()).collect();
    order.sort_by_key(|&i| {
        let s = &segments[i];
        (u128::from(s.first_ret.0) + u128::from(s.last_call.0), Reverse(s.groups.len()), i)
    });
    order.insert(0, 0);
    let mut placer = Placer { spans, segments, point: vec![0; spans.len()], cause: vec![None; spans.len()] };
    // The op that ends everything placed so far, and its segment.
    let mut end: Option<(usize, usize)> = None;
    for &si in &order {
        for (creator, readers) in &segments[si].groups {
            let mut start = end;
            if let Some(c) = *creator {
                placer.put(c, end, si)?;
                start = Some((c, si));
                end = start;
            }
            for &r in readers {
                placer.put(r, start, si)?;
                if end.is_none_or(|(e, _)| placer.point[r] > placer.point[e]) {
                    end = Some((r, si));
                }
            }
        }
    }
    Ok(())
}

/// The points placed so far, and for each op the op whose point set its own (`None`: its
/// invocation did) with whether the order between the two is forced.
struct Placer<'a> {
    spans: &'a [Span],
    segments: &'a [Segment],
    point: Vec<u64>,
    cause: Vec<Option<(usize, bool)>>,
}

impl Placer<'_> {
    /// Places `op` of `segment` at its invocation or after `after` (an op and its segment),
    /// whichever is later; fails when that is past its return.
    fn put(&mut self, op: usize, after: Option<(usize, usize)>, segment: usize) -> Result<(), Decision> {
        let span = self.spans[op];
        self.point[op] = span.call;
        let Some((prev, prev_seg)) = after.filter(|(prev, _)| self.point[*prev] > span.call) else { return Ok(()) };
        let forced = prev_seg == segment || must_precede(self.segments, prev_seg, segment);
        self.point[op] = self.point[prev];
        self.cause[op] = Some((prev, forced));
        if span.ret.is_none_or(|r| self.point[op] <= r) {
            return Ok(());
        }
        // `op` comes after a chain of ops that starts at an invocation later than its return.
        let mut chain = vec![op];
        let mut all_forced = true;
        while let Some((c, f)) = self.cause[*chain.last().expect("not empty")] {
            all_forced &= f;
            chain.push(c);
        }
        if !all_forced {
            return Err(Decision::Search("the order of concurrent writes is not determined".into()));
        }
        chain.reverse();
        Err(Decision::Illegal(Violation::Cycle { ops: chain }))
    }
}
