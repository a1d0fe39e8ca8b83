//! Versions: what a release reads, writes and speaks, and the cluster version that switches new
//! formats on.
//!
//! Three format versions move independently of the build's version string:
//!
//! * the **wire** version of the peer protocol, negotiated per connection ([`crate::transport`]):
//!   a sender starts at the newest it speaks and falls back one version when the peer refuses;
//! * the **storage** format of the data directory (`m/format`, [`crate::storage::open_db`]) and
//!   of the stored records;
//! * the **command** format of the raft log's entries (`Command.version`).
//!
//! A node writes the newer storage and command formats only once its group's **cluster
//! version** says so. The cluster version is the minimum release over the group's members,
//! agreed through raft: a leader proposes `SetClusterVersion` once every member has told it
//! (in its peer envelopes) that it runs a release that supports the version, and the version
//! never goes down. A node that meets a format newer than it reads (a command, a data
//! directory, a snapshot) stops with an error naming both versions: it never skips or misreads
//! what its peers apply.
//!
//! `--emulate-version N` makes this build behave as release N in everything above, so that an
//! upgrade from the previous release is testable with one binary.

/// This build's release.
pub const RELEASE: u32 = 3;

/// What one release reads, writes and speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The release number, which is also the highest cluster version it supports.
    pub release: u32,
    /// The oldest peer protocol version it speaks.
    pub wire_min: u32,
    /// The newest peer protocol version it speaks.
    pub wire_max: u32,
    /// The newest storage format it reads.
    pub storage_max: u32,
    /// The newest command format it reads.
    pub command_max: u32,
    /// The newest snapshot stream format it reads ([`snapshot_format`]).
    pub snapshot_max: u32,
}

/// Every release this build can be: itself and its predecessors.
///
/// Release 1 speaks wire version 1 only and reads storage, command and snapshot format 1.
/// Release 2 adds the peer envelope's `release` field (wire 2), stored records with a checksum
/// (storage 2), the `SetClusterVersion` command (command 2) and snapshots streamed as one SST
/// file (snapshot 2), the last three behind the cluster version.
/// Release 3 adds the `ProduceBatch` client call and command (command 3, [`Feature::ProduceBatch`]).
pub const RELEASES: [Release; 3] = [
    Release { release: 1, wire_min: 1, wire_max: 1, storage_max: 1, command_max: 1, snapshot_max: 1 },
    Release { release: 2, wire_min: 1, wire_max: 2, storage_max: 2, command_max: 2, snapshot_max: 2 },
    Release { release: 3, wire_min: 1, wire_max: 2, storage_max: 2, command_max: 3, snapshot_max: 2 },
];

/// A named feature that a release brings and the cluster version switches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Several idempotent produces in one raft entry (`ProduceBatch`, command format 3): one
    /// proposal, one log entry and one reply for records that would otherwise take one each.
    /// Below it a leader proposes one entry per record, and a node that does not have it (its
    /// release is older) answers the client call UNIMPLEMENTED.
    ProduceBatch,
}

impl Feature {
    /// The release (and cluster version) that brings the feature.
    pub fn since(self) -> u32 {
        match self {
            Feature::ProduceBatch => 3,
        }
    }

    /// Whether the feature is on at cluster version `cluster`.
    ///
    /// ```
    /// use ordeal_system::version::Feature;
    /// assert!(!Feature::ProduceBatch.on(2) && Feature::ProduceBatch.on(3));
    /// ```
    pub fn on(self, cluster: u32) -> bool {
        cluster >= self.since()
    }

    /// Whether release `release` has the feature (serves its client call, reads its command).
    pub fn in_release(self, release: &Release) -> bool {
        release.release >= self.since()
    }
}

/// The version string of `ordeal-broker --version`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (release 3; wire 1-2; storage 1-2; commands 1-3; snapshots 1-2; emulates releases 1-2)"
);

impl Release {
    /// This build's own release.
    pub fn current() -> Release {
        RELEASES[RELEASES.len() - 1]
    }

    /// Release `n`, if this build can behave as it (`--emulate-version`).
    ///
    /// ```
    /// use ordeal_system::version::Release;
    /// assert_eq!(Release::emulate(1).unwrap().wire_max, 1);
    /// assert!(Release::emulate(0).is_err() && Release::emulate(4).is_err());
    /// ```
    pub fn emulate(n: u32) -> Result<Release, String> {
        RELEASES.iter().find(|r| r.release == n).copied().ok_or_else(|| {
            format!("--emulate-version {n}: this build (release {RELEASE}) can behave as releases 1 to {RELEASE}")
        })
    }
}

/// The storage format written under cluster version `cluster`.
pub fn storage_format(cluster: u32) -> u32 {
    cluster.clamp(1, 2)
}

/// The command format proposed under cluster version `cluster`.
pub fn command_format(cluster: u32) -> u32 {
    cluster.clamp(1, 3)
}

/// The snapshot stream format a leader sends under cluster version `cluster`: 1 streams the
/// state's key-value pairs, which every release reads; 2 streams the snapshot's SST file as it
/// is, which only release 2 reads, so it waits for the gate like the other formats.
///
/// ```
/// use ordeal_system::version::{RELEASES, snapshot_format};
/// assert_eq!((snapshot_format(1), snapshot_format(2)), (1, 2));
/// // Whatever the cluster version, every member's release reads what is sent.
/// assert!(RELEASES.iter().all(|r| snapshot_format(r.release) <= r.snapshot_max));
/// ```
pub fn snapshot_format(cluster: u32) -> u32 {
    cluster.clamp(1, 2)
}

/// CRC-32C (Castagnoli) of `parts` in order: the checksum of storage format 2's records.
///
/// ```
/// assert_eq!(ordeal_system::version::crc32c(&[b"123456789"]), 0xE306_9283);
/// ```
pub fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for b in parts.iter().flat_map(|p| p.iter()) {
        crc = CRC_TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_string_names_the_constants() {
        let c = Release::current();
        assert_eq!(c.release, RELEASE);
        let expect = format!(
            "release {}; wire {}-{}; storage 1-{}; commands 1-{}; snapshots 1-{}; emulates releases {}-{}",
            c.release,
            c.wire_min,
            c.wire_max,
            c.storage_max,
            c.command_max,
            c.snapshot_max,
            RELEASES[0].release,
            RELEASES[RELEASES.len() - 2].release
        );
        assert!(LONG_VERSION.contains(&expect), "{LONG_VERSION} vs {expect}");
    }
}
