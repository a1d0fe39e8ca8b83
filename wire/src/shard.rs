//! Which raft group owns what. Clients compute the same mapping to find a group's leader.
//!
//! The hash is FNV-1a, spelled out here because it must never change between builds: a rolling
//! upgrade with a different mapping would split a partition across groups.

/// FNV-1a over a sequence of byte strings, each followed by a 0xff separator.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn pick(hash: u64, groups: u32) -> u32 {
    (hash % u64::from(groups.max(1))) as u32
}

/// The group of a topic partition.
///
/// ```
/// assert!(ordeal_wire::shard::group_of_partition("events", 3, 4) < 4);
/// ```
pub fn group_of_partition(topic: &str, partition: u32, groups: u32) -> u32 {
    pick(fnv1a(&[b"p", topic.as_bytes(), &partition.to_be_bytes()]), groups)
}

/// The group of a key-value register.
pub fn group_of_key(key: &[u8], groups: u32) -> u32 {
    pick(fnv1a(&[b"k", key]), groups)
}

/// The group that stores a consumer group's offsets (Kafka's group coordinator).
pub fn group_of_consumer_group(name: &str, groups: u32) -> u32 {
    pick(fnv1a(&[b"c", name.as_bytes()]), groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_stable_across_builds() {
        // Pinned values: changing them breaks rolling upgrades.
        assert_eq!(fnv1a(&[b"k", b"x"]), 0x3611_71d5_051a_87fe);
        let first: Vec<u32> = (0..8).map(|i| group_of_key(format!("key{i}").as_bytes(), 4)).collect();
        assert_eq!(first, vec![3, 2, 1, 0, 3, 2, 1, 0]);
        assert_eq!(group_of_partition("events", 3, 4), 0);
        let spread: std::collections::BTreeSet<u32> =
            (0..64).map(|i| group_of_key(format!("key{i}").as_bytes(), 4)).collect();
        assert_eq!(spread.len(), 4);
        assert_eq!(group_of_key(b"anything", 1), 0);
    }
}
