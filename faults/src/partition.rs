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

/// The nodes cut off from a majority: those linked to fewer than a majority of the nodes (itself
/// included). A link needs packets both ways, as TCP does: a node links to those it hears that
/// also hear it.
pub fn isolated(g: &Grudge, nodes: &[u64]) -> Vec<u64> {
    let majority = nodes.len() / 2 + 1;
    let deaf = |a: u64, b: u64| g.get(&a).is_some_and(|s| s.contains(&b));
    let linked = |x: u64| nodes.iter().filter(|y| !deaf(x, **y) && !deaf(**y, x)).count();
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
}
