//! Partition shapes as grudges: for each node, the nodes whose packets it drops. Pure functions
//! of the node list (and a random order), so each can be tested on its own.

use crate::Shape;
use std::collections::{BTreeMap, BTreeSet};

/// For each node, the set of nodes it does not hear.
pub type Grudge = BTreeMap<u64, BTreeSet<u64>>;

/// `a` and `b` cannot hear each other.
pub fn complete(a: &[u64], b: &[u64]) -> Grudge {
    let mut g = Grudge::new();
    for x in a {
        g.entry(*x).or_default().extend(b);
    }
    for y in b {
        g.entry(*y).or_default().extend(a);
    }
    g
}

/// The grudge of `shape` over `order` (the nodes, shuffled for random shapes), with `target` the
/// node an `Isolate` or `OneWay` shape aims at.
pub fn grudge(shape: Shape, order: &[u64], target: u64) -> Grudge {
    let n = order.len();
    match shape {
        Shape::RandomHalves | Shape::Halves => {
            let (a, b) = order.split_at(n / 2);
            complete(a, b)
        }
        Shape::Isolate => {
            let rest: Vec<u64> = order.iter().copied().filter(|x| *x != target).collect();
            complete(&[target], &rest)
        }
        Shape::OneWay => Grudge::from([(target, order.iter().copied().filter(|x| *x != target).collect())]),
        Shape::MajoritiesRing => {
            let majority = n / 2 + 1;
            // Hearing goes both ways: a TCP connection needs packets in both directions, so a
            // node that hears another but is not heard by it has no link to it at all. Nodes
            // within `reach` places of each other on the ring hear each other, a majority each.
            // Three nodes cannot be laid out so; they each hear the next one only, which over
            // TCP cuts every link (docs/faults.md).
            let reach = majority / 2;
            let hears = |i: usize, j: usize| {
                let d = (j + n - i) % n;
                if 2 * reach + 1 < n { d.min(n - d) <= reach } else { d < majority }
            };
            let unheard = |i: usize| order.iter().enumerate().filter(move |(j, _)| !hears(i, *j)).map(|(_, x)| *x);
            order.iter().enumerate().map(|(i, node)| (*node, unheard(i).collect())).collect()
        }
        Shape::Bridge => {
            let (a, rest) = order.split_at(n / 2);
            let b = rest.get(1..).unwrap_or_default();
            complete(a, b)
        }
    }
}

/// Whether `a` drops `b`'s packets under `g`.
fn drops(g: &Grudge, a: u64, b: u64) -> bool {
    g.get(&a).is_some_and(|s| s.contains(&b))
}

/// `g` (a grudge among voters) extended to the nodes in `hosts` (learners, and nodes not yet
/// joined, each mapped to a voter): each shares its voter's place, hearing whom it hears and
/// heard by whom hears it. A node left out of every grudge would hear both sides, and a learner
/// promoted during the fault would then bridge them.
pub fn attach(g: &Grudge, hosts: &BTreeMap<u64, u64>) -> Grudge {
    let host = |x: u64| hosts.get(&x).copied().unwrap_or(x);
    let all: BTreeSet<u64> =
        g.iter().flat_map(|(a, s)| std::iter::once(a).chain(s)).chain(hosts.keys()).copied().collect();
    all.iter()
        .map(|&a| (a, all.iter().copied().filter(|&b| drops(g, host(a), host(b))).collect::<BTreeSet<u64>>()))
        .filter(|(_, unheard)| !unheard.is_empty())
        .collect()
}

/// The nodes cut off from a majority: those linked to fewer than a majority of `nodes` (itself
/// included; the voters, over whom quorums are counted). A link needs packets both ways, as TCP
/// does: a node links to those it hears that also hear it.
pub fn isolated(g: &Grudge, nodes: &[u64]) -> Vec<u64> {
    let majority = nodes.len() / 2 + 1;
    let linked = |x: u64| nodes.iter().filter(|y| !drops(g, x, **y) && !drops(g, **y, x)).count();
    nodes.iter().copied().filter(|x| linked(*x) < majority).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(g: &Grudge, node: u64, nodes: &[u64]) -> Vec<u64> {
        nodes.iter().copied().filter(|x| !g.get(&node).is_some_and(|s| s.contains(x))).collect()
    }

    #[test]
    fn shapes() {
        let five = [1, 2, 3, 4, 5];
        let halves = grudge(Shape::Halves, &five, 0);
        assert_eq!(heard(&halves, 1, &five), vec![1, 2]);
        assert_eq!(heard(&halves, 4, &five), vec![3, 4, 5]);
        assert_eq!(isolated(&halves, &five), vec![1, 2]);

        let iso = grudge(Shape::Isolate, &five, 3);
        assert_eq!(heard(&iso, 3, &five), vec![3]);
        assert_eq!(heard(&iso, 1, &five), vec![1, 2, 4, 5]);

        let ring = grudge(Shape::MajoritiesRing, &five, 0);
        let views: BTreeSet<Vec<u64>> = five.iter().map(|n| heard(&ring, *n, &five)).collect();
        assert_eq!(views.len(), 5, "no two nodes hear the same majority");
        assert!(five.iter().all(|n| heard(&ring, *n, &five).len() == 3), "each hears a majority");
        for a in five {
            for b in five {
                assert_eq!(heard(&ring, a, &five).contains(&b), heard(&ring, b, &five).contains(&a), "{a} and {b}");
            }
        }
        for n in 4..=8 {
            let nodes: Vec<u64> = (1..=n).collect();
            let ring = grudge(Shape::MajoritiesRing, &nodes, 0);
            let views: BTreeSet<Vec<u64>> = nodes.iter().map(|x| heard(&ring, *x, &nodes)).collect();
            assert_eq!(views.len(), nodes.len(), "{n} nodes: no two hear the same majority");
            assert!(views.iter().all(|v| v.len() > nodes.len() / 2 && v.len() < nodes.len()), "{n}: {views:?}");
        }

        let bridge = grudge(Shape::Bridge, &five, 0);
        assert_eq!(heard(&bridge, 3, &five), five.to_vec(), "the bridge hears everyone");
        assert_eq!(heard(&bridge, 1, &five), vec![1, 2, 3]);
        assert_eq!(heard(&bridge, 5, &five), vec![3, 4, 5]);

        assert_eq!(isolated(&ring, &five), Vec::<u64>::new(), "each links to a majority");
        let three = [1, 2, 3];
        let ring = grudge(Shape::MajoritiesRing, &three, 0);
        assert_eq!(isolated(&ring, &three), three.to_vec(), "three on a ring: every link is cut");

        let oneway = grudge(Shape::OneWay, &[1, 2, 3], 2);
        assert_eq!(isolated(&oneway, &[1, 2, 3]), vec![2]);
        assert_eq!(heard(&oneway, 2, &[1, 2, 3]), vec![2]);
        assert_eq!(heard(&oneway, 1, &[1, 2, 3]), vec![1, 2, 3], "the others still hear it");
    }

    #[test]
    fn learners_and_joiners_take_their_voters_side_and_quorums_count_voters_only() {
        let voters = [1, 2, 3];
        // Learner 4 beside voter 1, not-yet-joined node 5 beside voter 3.
        let hosts = BTreeMap::from([(4, 1), (5, 3)]);
        let all = [1, 2, 3, 4, 5];
        let halves = attach(&grudge(Shape::Halves, &voters, 0), &hosts);
        assert_eq!(heard(&halves, 4, &all), vec![1, 4], "the learner is on its voter's side");
        assert_eq!(heard(&halves, 5, &all), vec![2, 3, 5], "so is the joiner");
        assert_eq!(heard(&halves, 2, &all), vec![2, 3, 5]);
        assert_eq!(isolated(&halves, &voters), vec![1], "the side with two voters keeps a quorum");
        let host_of = |n: u64| hosts.get(&n).copied().unwrap_or(n);
        for shape in [Shape::Halves, Shape::Isolate, Shape::OneWay, Shape::MajoritiesRing, Shape::Bridge] {
            let among_voters = grudge(shape, &voters, 2);
            let g = attach(&among_voters, &hosts);
            // Every pair, both ways: each node hears as its voter does.
            for x in all {
                for y in all {
                    let (hx, hy) = (host_of(x), host_of(y));
                    let expected = hx == hy || heard(&among_voters, hx, &voters).contains(&hy);
                    assert_eq!(heard(&g, x, &all).contains(&y), expected, "{shape:?}: {x} hears {y}");
                }
            }
        }
    }
}
