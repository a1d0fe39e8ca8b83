//! lazyfs: a FUSE file system that loses what was not fsynced when its node crashes, as a power
//! failure does (after Jepsen's lazyfs). Killing a process loses nothing the kernel already
//! took, and dropping the page cache drops only clean pages; so a node that acknowledges before
//! it fsyncs looks correct under every other fault.
//!
//! Each node's data directory is a mount of its own over a backing directory (the "disk").
//! Writes go through to the disk at once, so reads need no cache of their own, and each file
//! keeps an undo record of what its writes since its last fsync replaced: its length at that
//! fsync and the bytes they overwrote. [`LazyFs::lose_unsynced`], called while the node is dead,
//! plays the records back, which leaves every file as its last fsync saw it. Names (create,
//! rename, unlink) are durable at once: the fault models lost file data, not lost directory
//! entries.
//!
//! The mount lives as long as the [`LazyFs`] value: dropping it unmounts. A harness killed
//! hard leaves a dead mount behind, which `ordeal cleanup` removes ([`leftovers`], [`unmount`]).

use crate::layout::Layout;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, Session, SessionACL, TimeOrNow, WriteFlags,
};
use nix::libc;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file system type mounts of lazyfs carry in `/proc/self/mountinfo`.
pub const FS_TYPE: &str = "fuse.ordeal-lazyfs";

/// Nothing is cached in the kernel: attributes change behind its back when a crash loses data.
const TTL: Duration = Duration::ZERO;

/// A lazyfs failure.
#[derive(Debug, thiserror::Error)]
pub enum LazyFsError {
    /// Mounting failed (no /dev/fuse, not root, ...).
    #[error("mounting lazyfs on {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Playing back the undo records failed: the disk is in an unknown state.
    #[error("losing the unsynced writes of {path}: {source}")]
    Lose {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What a crash lost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Lost {
    /// Files that had writes since their last fsync.
    pub files: usize,
    /// Bytes those writes had appended or overwritten.
    pub bytes: u64,
}

/// One mounted lazyfs.
pub struct LazyFs {
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    // Dropped after the unmount; the thread ends when the kernel closes the connection.
    _session: fuser::BackgroundSession,
}

impl LazyFs {
    /// Mounts a lazyfs at `mountpoint` whose files live in `disk` (both created if missing).
    /// Needs root: it mounts with mount(2), without fusermount.
    pub fn mount(disk: &Path, mountpoint: &Path) -> Result<LazyFs, LazyFsError> {
        let err = |source| LazyFsError::Mount { path: mountpoint.to_path_buf(), source };
        fs::create_dir_all(disk).map_err(err)?;
        fs::create_dir_all(mountpoint).map_err(err)?;
        let root = fs::canonicalize(disk).map_err(err)?;
        let dev = OpenOptions::new().read(true).write(true).open("/dev/fuse").map_err(err)?;
        let options = format!(
            "fd={},rootmode=40000,user_id={},group_id={},allow_other,default_permissions",
            dev.as_raw_fd(),
            nix::unistd::geteuid(),
            nix::unistd::getegid()
        );
        nix::mount::mount(
            Some("ordeal-lazyfs"),
            mountpoint,
            Some(FS_TYPE),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| err(e.into()))?;
        let state = Arc::new(Mutex::new(State::default()));
        let fs = Fs { root, state: state.clone() };
        let mut config = Config::default();
        config.acl = SessionACL::All;
        match Session::from_fd(fs, OwnedFd::from(dev), SessionACL::All, config).and_then(Session::spawn) {
            Ok(session) => Ok(LazyFs { mountpoint: mountpoint.to_path_buf(), state, _session: session }),
            Err(e) => {
                unmount(mountpoint).ok();
                Err(err(e))
            }
        }
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Undoes every write made since its file's last fsync. Call only while no process uses the
    /// mount (its node was killed): a write in flight could land after the undo.
    pub fn lose_unsynced(&self) -> Result<Lost, LazyFsError> {
        let mut state = lock(&self.state);
        let unsynced = std::mem::take(&mut state.unsynced);
        let mut lost = Lost::default();
        for (ino, undo) in unsynced {
            // A file unlinked since has nothing left to lose.
            let Some(path) = state.paths.get(&ino) else { continue };
            let err = |source| LazyFsError::Lose { path: path.clone(), source };
            let file = match OpenOptions::new().write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(e)),
            };
            let len = file.metadata().map_err(err)?.len();
            lost.files += 1;
            lost.bytes += len.saturating_sub(undo.synced_len);
            // Newest first, so that a range written twice ends as the fsync saw it.
            for (offset, bytes) in undo.overwritten.iter().rev() {
                lost.bytes += bytes.len() as u64;
                file.write_all_at(bytes, *offset).map_err(err)?;
            }
            file.set_len(undo.synced_len).map_err(err)?;
        }
        Ok(lost)
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.mountpoint) {
            tracing::warn!("unmounting lazyfs at {}: {e}", self.mountpoint.display());
        }
    }
}

/// Every node's data directory on a lazyfs of its own, for the crash faults.
#[derive(Default)]
pub struct Disks(BTreeMap<u64, LazyFs>);

impl Disks {
    /// Mounts a lazyfs at each slot's data directory, its files in the slot's `disk/`.
    pub fn mount(layout: &Layout) -> Result<Disks, LazyFsError> {
        let mut disks = BTreeMap::new();
        for slot in layout.slots.iter().chain(&layout.spares) {
            disks.insert(slot.id, LazyFs::mount(&slot.dir.join("disk"), &slot.data_dir())?);
        }
        Ok(Disks(disks))
    }

    /// Loses `node`'s writes since their last fsync (call while it is dead); nothing when its
    /// directory is not on lazyfs.
    pub fn lose_unsynced(&self, node: u64) -> Result<Lost, LazyFsError> {
        self.0.get(&node).map_or(Ok(Lost::default()), LazyFs::lose_unsynced)
    }
}

/// Why lazyfs cannot mount here, if it cannot: it needs root (mount(2)) and /dev/fuse.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("lazyfs mounts with mount(2), which needs root".into());
    }
    match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/fuse: {e}")),
    }
}

/// Detaches the mount at `path` (also a dead one whose process is gone).
pub fn unmount(path: &Path) -> io::Result<()> {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
}

/// The lazyfs mounts under `root`, from `/proc/self/mountinfo`.
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    mounts_of_type(&info, FS_TYPE).into_iter().filter(|p| p.starts_with(root)).collect()
}

/// The mount points of `fstype` in a mountinfo text (fields: id, parent, dev, root, mount
/// point, options, optional fields, "-", type, ...; spaces in paths escaped as `\040`).
fn mounts_of_type(info: &str, fstype: &str) -> Vec<PathBuf> {
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let point = fields.get(4)?;
            (fields.get(dash + 1) == Some(&fstype)).then(|| PathBuf::from(unescape(point)))
        })
        .collect()
}

fn unescape(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The writes to one file since its last fsync, as what undoes them.
struct Undo {
    /// The file's length at its last fsync (or when it was first written after it).
    synced_len: u64,
    /// (offset, the bytes a write replaced there), oldest first.
    overwritten: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    /// Inode (the disk's) → its path on the disk, learnt from lookups.
    paths: HashMap<u64, PathBuf>,
    /// File handle → (inode, the file open on the disk).
    open: HashMap<u64, (u64, File)>,
    next_fh: u64,
    /// Inode → what undoes its writes since its last fsync.
    unsynced: HashMap<u64, Undo>,
}

/// Notes in `unsynced` that `len` bytes at `offset` of `file` are about to change (a write, a
/// truncation).
fn before_write(unsynced: &mut HashMap<u64, Undo>, ino: u64, file: &File, offset: u64, len: u64) -> io::Result<()> {
    let len_now = file.metadata()?.len();
    let undo = unsynced.entry(ino).or_insert(Undo { synced_len: len_now, overwritten: Vec::new() });
    let end = offset.saturating_add(len).min(len_now);
    if offset < end {
        let mut old = vec![0; (end - offset) as usize];
        file.read_exact_at(&mut old, offset)?;
        undo.overwritten.push((offset, old));
    }
    Ok(())
}

impl State {
    /// Runs `f` on the open file `fh` after noting that `len` bytes at `offset` will change.
    fn changing<T>(
        &mut self,
        fh: FileHandle,
        offset: u64,
        len: u64,
        f: impl FnOnce(&File) -> io::Result<T>,
    ) -> Result<T, Errno> {
        let State { open, unsynced, .. } = self;
        let (ino, file) = open.get(&fh.0).ok_or(Errno::EBADF)?;
        before_write(unsynced, *ino, file, offset, len)?;
        Ok(f(file)?)
    }

    fn add_open(&mut self, ino: u64, file: File) -> FileHandle {
        self.next_fh += 1;
        self.open.insert(self.next_fh, (ino, file));
        FileHandle(self.next_fh)
    }

    fn file(&self, fh: FileHandle) -> Result<&(u64, File), Errno> {
        self.open.get(&fh.0).ok_or(Errno::EBADF)
    }

    /// A path renamed from `from` to `to`: every known path under it follows.
    fn renamed(&mut self, from: &Path, to: &Path) {
        for path in self.paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(from) {
                *path = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
            }
        }
    }

    /// The last name of `ino` on the disk is gone: nothing of it can be lost any more.
    fn removed(&mut self, ino: u64, path: &Path, links_before: u64) {
        if self.paths.get(&ino).is_some_and(|p| p == path) {
            self.paths.remove(&ino);
        }
        if links_before <= 1 {
            self.unsynced.remove(&ino);
        }
    }
}

// No invariant spans a panic in the state: each map entry is whole.
fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file system the kernel talks to: the disk's inode numbers, the root as inode 1.
struct Fs {
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

impl Fs {
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        if ino == INodeNo::ROOT {
            return Ok(self.root.clone());
        }
        lock(&self.state).paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    /// Learns `path` and answers with its attributes.
    fn learn(&self, path: PathBuf) -> Result<FileAttr, Errno> {
        let m = fs::symlink_metadata(&path)?;
        lock(&self.state).paths.insert(m.ino(), path);
        Ok(attr(m.ino(), &m))
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn set_size(&self, ino: INodeNo, size: u64) -> Result<(), Errno> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(ino)?)?;
        before_write(&mut lock(&self.state).unsynced, ino.0, &file, size, u64::MAX)?;
        file.set_len(size)?;
        Ok(())
    }

    fn read_at(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let state = lock(&self.state);
        let (_, file) = state.file(fh)?;
        let mut buf = vec![0; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    fn write_at(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<(), Errno> {
        lock(&self.state).changing(fh, offset, data.len() as u64, |file| file.write_all_at(data, offset))
    }

    fn entries(&self, ino: INodeNo) -> Result<Vec<(u64, FileType, std::ffi::OsString)>, Errno> {
        let mut out = vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
        for e in fs::read_dir(self.path(ino)?)? {
            let e = e?;
            let m = e.metadata()?;
            out.push((m.ino(), kind(&m), e.file_name()));
        }
        Ok(out)
    }

    fn unlink_at(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let path = self.child(parent, name)?;
        let m = fs::symlink_metadata(&path)?;
        if dir {
            fs::remove_dir(&path)?
        } else {
            fs::remove_file(&path)?
        }
        lock(&self.state).removed(m.ino(), &path, m.nlink());
        Ok(())
    }

    fn rename_at(&self, from: PathBuf, to: PathBuf) -> Result<(), Errno> {
        let replaced = fs::symlink_metadata(&to).ok();
        fs::rename(&from, &to)?;
        let mut state = lock(&self.state);
        if let Some(m) = replaced {
            state.removed(m.ino(), &to, m.nlink());
        }
        state.renamed(&from, &to);
        Ok(())
    }

    fn open_at(&self, ino: INodeNo, flags: OpenFlags) -> Result<FileHandle, Errno> {
        let writable = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        let file = OpenOptions::new().read(true).write(writable).open(self.path(ino)?)?;
        Ok(lock(&self.state).add_open(ino.0, file))
    }

    fn create_at(&self, parent: INodeNo, name: &OsStr, mode: u32, flags: i32) -> Result<(FileAttr, FileHandle), Errno> {
        let path = self.child(parent, name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .custom_flags(flags & libc::O_EXCL)
            .mode(mode)
            .open(&path)?;
        let attr = self.learn(path)?;
        Ok((attr, lock(&self.state).add_open(attr.ino.0, file)))
    }

    fn allocate(&self, fh: FileHandle, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
        let flags = nix::fcntl::FallocateFlags::from_bits_truncate(mode);
        lock(&self.state).changing(fh, offset, length, |file| {
            nix::fcntl::fallocate(file.as_fd(), flags, offset as i64, length as i64).map_err(io::Error::from)
        })
    }
}

fn kind(m: &Metadata) -> FileType {
    FileType::from_std(m.file_type()).unwrap_or(FileType::RegularFile)
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
}

fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(m),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

/// Answers `reply` with `ok` on success, with the errno otherwise.
macro_rules! answer {
    ($result:expr, $reply:ident, |$v:pat_param| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|p| self.learn(p));
        match result {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let open = fh.and_then(|fh| lock(&self.state).file(fh).ok().and_then(|(_, f)| f.metadata().ok()));
        let result = match open {
            Some(m) => Ok(m),
            None => self.path(ino).and_then(|p| fs::symlink_metadata(p).map_err(Errno::from)),
        };
        match result {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = (|| {
            if let Some(size) = size {
                self.set_size(ino, size)?;
            }
            let path = self.path(ino)?;
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
            }
            Ok(fs::symlink_metadata(&path)?)
        })();
        match result {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|path| {
            fs::create_dir(&path)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & !umask))?;
            self.learn(path)
        });
        answer!(result, reply, |a| reply.entry(&TTL, &a, Generation(0)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer!(self.unlink_at(parent, name, false), reply, |()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer!(self.unlink_at(parent, name, true), reply, |()| reply.ok());
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_NOREPLACE and RENAME_EXCHANGE are not offered; the kernel then falls back.
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let result = self.child(parent, name).and_then(|from| self.rename_at(from, self.child(newparent, newname)?));
        answer!(result, reply, |()| reply.ok());
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let result = self.path(ino).and_then(|from| {
            let to = self.child(newparent, newname)?;
            fs::hard_link(&from, &to)?;
            let m = fs::symlink_metadata(&to)?;
            Ok(attr(m.ino(), &m))
        });
        answer!(result, reply, |a| reply.entry(&TTL, &a, Generation(0)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // Direct I/O: no page cache in between, so every write reaches the undo records.
        answer!(self.open_at(ino, flags), reply, |fh| reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        answer!(self.read_at(fh, offset, size), reply, |d| reply.data(&d));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        answer!(self.write_at(fh, offset, data), reply, |()| reply.written(data.len() as u32));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.state).open.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // The disk is the durable state: what reached it is kept from now on.
        lock(&self.state).unsynced.remove(&ino.0);
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.entries(ino) {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(&self.root) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.create_at(parent, name, mode & !umask, flags);
        answer!(result, reply, |(a, fh)| reply.created(&TTL, &a, Generation(0), fh, FopenFlags::FOPEN_DIRECT_IO));
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        // No extended attributes: the kernel stops asking (the default answers the same, with a
        // warning on every write, which asks for `security.capability`).
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        answer!(self.allocate(fh, offset, length, mode), reply, |()| reply.ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_name_their_lazyfs_mounts() {
        let info = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - fuse.ordeal-lazyfs ordeal-lazyfs rw\n\
                    37 35 98:0 / /tmp/x rw shared:2 - ext4 /dev/root rw\n";
        assert_eq!(mounts_of_type(info, FS_TYPE), vec![PathBuf::from("/mnt/a b")]);
    }
}
