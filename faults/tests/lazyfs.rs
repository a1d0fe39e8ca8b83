//! lazyfs on a real FUSE mount: what was fsynced survives a crash, nothing else does, and the
//! mount goes away with its value.

use ordeal_faults::lazyfs::{self, LazyFs, Lost};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

/// `None` (with the reason printed) where FUSE mounts are impossible: not root, no /dev/fuse.
fn fuse_or_skip(test: &str) -> Option<()> {
    match lazyfs::unavailable() {
        Some(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
        None => Some(()),
    }
}

#[test]
fn a_crash_keeps_what_was_fsynced_and_loses_the_rest() {
    if fuse_or_skip("a_crash_keeps_what_was_fsynced_and_loses_the_rest").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (disk, data) = (dir.path().join("disk"), dir.path().join("data"));
    let fs = LazyFs::mount(&disk, &data).unwrap();
    assert_eq!(lazyfs::leftovers(dir.path()), vec![data.clone()]);

    fs::create_dir(data.join("wal")).unwrap();
    let mut log = OpenOptions::new().create(true).append(true).open(data.join("wal/log")).unwrap();
    log.write_all(b"synced ").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"lost").unwrap();
    // An overwrite inside the synced part is undone too.
    let patch = OpenOptions::new().write(true).open(data.join("wal/log")).unwrap();
    patch.write_all_at(b"S", 0).unwrap();
    fs::write(data.join("never-synced"), b"gone").unwrap();
    fs::write(data.join("tmp"), b"renamed, then synced").unwrap();
    OpenOptions::new().write(true).open(data.join("tmp")).unwrap().sync_all().unwrap();
    fs::rename(data.join("tmp"), data.join("CURRENT")).unwrap();
    assert_eq!(fs::read(data.join("wal/log")).unwrap(), b"Synced lost", "reads see unsynced writes");
    drop((log, patch));

    let lost = fs.lose_unsynced().unwrap();
    assert_eq!(lost, Lost { files: 2, bytes: 4 + 1 + 4 });
    assert_eq!(fs::read(data.join("wal/log")).unwrap(), b"synced ");
    assert_eq!(fs::read(data.join("never-synced")).unwrap(), b"", "names are durable, data is not");
    assert_eq!(fs::read(data.join("CURRENT")).unwrap(), b"renamed, then synced");
    assert_eq!(fs.lose_unsynced().unwrap(), Lost::default(), "a second crash finds nothing new");

    drop(fs);
    assert!(lazyfs::leftovers(dir.path()).is_empty(), "dropping it unmounts");
    assert_eq!(fs::read(disk.join("wal/log")).unwrap(), b"synced ", "the disk keeps the files");
}
