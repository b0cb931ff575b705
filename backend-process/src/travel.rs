//! Handles that travel: a `Sender`, `Receiver`, `Lock`, `Semaphore`, `Event` or `Barrier`
//! serialized in one process (sent through a channel, returned from a pool
//! task, stored in a `Map`) and deserialized in another — one that did not inherit it, such as
//! a worker forked before the object existed — maps the same memory and works.
//!
//! # Mechanism
//!
//! Every primitive's memory is a memory file of the process that made it (`memfd`, see
//! `shm.rs`), kept open beside the mapping, so a forked child holds it under the same number.
//! A serialized handle is a [`Wire`]: the kind of primitive, a hash of its element type, the
//! layout parameters, the identity (pid and start time) of the serializing process, the
//! number of the descriptor it holds the file under, the file's device and inode numbers and
//! its length. Deserializing opens `/proc/<pid>/fd/<fd>` — a new open of the same file, which
//! the kernel allows a process of the same user — and maps it.
//!
//! The alternative, giving the object a hidden name in `/dev/shm` on its first serialization,
//! needs every object to live on that file system from its creation (it cannot name anonymous
//! memory afterwards), where its size is capped by the mount (64 MiB in a default container)
//! and a name outlives a crash unless something sweeps it. A memory file has no name at all:
//! nothing can leak on disk, and the memory goes when the last process that maps it does.
//!
//! # The bytes are untrusted
//!
//! Anyone who can write to a channel can forge a `Wire`. Before mapping, [`open`] checks
//! the kind and element type asked for, that the process named is alive and is the one that
//! serialized (start time), and, on the opened file, that it is a regular file of this user
//! with the device and inode numbers and the exact length the wire names; the caller checks
//! the layout parameters (as a named object's) before it builds its handle. The mapped memory
//! itself is treated as any shared mapping: untrusted (`shm.rs`).
//!
//! # The rule of a handle in flight
//!
//! *A serialized handle is held by the process that serialized it, until it is deserialized
//! or that process ends.* So:
//! - the process that serialized keeps the object mapped while the handle is in flight
//!   ([`keep`]; a `Lock`, `Semaphore`, `Event` or `Barrier`, which count no holders, for the
//!   rest of its life, one mapping per object), and a travelling channel end is counted in
//!   that process's slot (`channel/travel.rs`): a receiver never sees `Disconnected` because
//!   the only sender is inside a message;
//! - the first deserialization takes the travelling end over (it is then counted in the
//!   deserializing process, which becomes a member: its death is reaped like a child's); each
//!   further deserialization of the same bytes is one more clone, while the object lives;
//! - a handle never deserialized (its message dropped) is released when the serializing process
//!   ends (exits or is killed: its slot is reaped); it never outlives that process, and no file
//!   is left behind. Bytes deserialized after that fail with `NotFound`.

use crate::spin::SpinLock;

use serde::{Deserialize, Serialize};
use uniconc_core::Error;

use crate::fsfile::Fd;
use crate::named::Kind;
use crate::procs::{self, Identity};
use crate::shm::Region;

/// A handle as it travels: which object, held by which process under which descriptor.
///
/// Invariants (checked by [`open`], every field untrusted): `kind` and `type_hash` are the
/// receiver's; `(pid, start)` is a live process; its descriptor `fd` is a regular file of this
/// user with device `dev`, inode `ino` and size `len`. `params` are the primitive's layout
/// parameters (as `NamedHeader::params`) and `slot` the serializer's process slot (channels).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Wire {
    pub(crate) kind: u32,
    pub(crate) type_hash: u64,
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) fd: i32,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) len: u64,
    pub(crate) params: [u64; 4],
    pub(crate) slot: u32,
}

impl Wire {
    /// The file of this wire's object: `(dev, ino)`, which tells two handles of one object.
    pub(crate) fn object(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// FNV-1a of a type name: tells element types apart across processes of one build.
pub(crate) fn type_hash(type_name: &str) -> u64 {
    type_name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn file_id(fd: libc::c_int, what: &str) -> Result<libc::stat, Error> {
    // SAFETY: an all-zero `stat` is a valid value; `fstat` only writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor owned by the caller's region, and a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::last_os_error(format!("inspecting {what}")));
    }
    Ok(st)
}

/// The wire form of `region`'s object, held by this process.
///
/// # Errors
/// `Unsupported` if the region has no memory file (a named object's: send its name; or a
/// system without `memfd_create`).
// `dev_t`/`ino_t` are not `u64` on every platform.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn describe(
    region: &Region,
    kind: Kind,
    type_name: &str,
    params: [u64; 4],
    slot: u32,
) -> Result<Wire, Error> {
    let (fd, len) = region.file();
    if fd < 0 {
        return Err(Error::unsupported(
            "this handle cannot travel: its object has no memory file of this process (a \
             named object: send its name instead, or a system without memfd_create)",
        ));
    }
    let st = file_id(fd, "a travelling handle's memory")?;
    let me = Identity::me();
    Ok(Wire {
        kind: kind as u32,
        type_hash: type_hash(type_name),
        pid: me.pid,
        start: me.start,
        fd,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        len: len as u64,
        params,
        slot,
    })
}

/// Maps the object `w` names, after checking it is what the caller asks for (see the module
/// docs). The caller still checks `w.params` against `w.len`.
///
/// # Errors
/// `Incompatible` for another kind or element type, or a file that is not the one named;
/// `NotFound` if the serializing process has ended (and with it the handle in flight).
pub(crate) fn open(w: &Wire, kind: Kind, type_name: &str) -> Result<Region, Error> {
    check(w, kind, type_name)?;
    map(w)
}

/// Checks that `w` is a handle of `kind` over `type_name`.
///
/// # Errors
/// `Incompatible` otherwise.
pub(crate) fn check(w: &Wire, kind: Kind, type_name: &str) -> Result<(), Error> {
    let what = |k: u32| match k {
        1 => "a channel",
        2 => "a lock",
        3 => "a semaphore",
        4 => "an event",
        5 => "a barrier",
        6 => "a value",
        7 => "an array",
        _ => "an unknown kind of object",
    };
    if w.kind != kind as u32 {
        return Err(Error::incompatible(format!(
            "a travelling handle of {} was read as a handle of {}",
            what(w.kind),
            what(kind as u32)
        )));
    }
    if w.type_hash != type_hash(type_name) {
        return Err(Error::incompatible(format!(
            "a travelling handle was read with element type `{type_name}`, which is not the \
             type it was made for"
        )));
    }
    Ok(())
}

// `dev_t`/`ino_t` are not `u64` on every platform.
#[allow(clippy::unnecessary_cast)]
fn map(w: &Wire) -> Result<Region, Error> {
    let holder = Identity {
        pid: w.pid,
        start: w.start,
    };
    let gone = || {
        Error::not_found(format!(
            "the process that serialized this handle (pid {}) has ended, and the handle in \
             flight with it",
            w.pid
        ))
    };
    if w.fd < 0 || !procs::is_alive(holder) {
        return Err(gone());
    }
    let len = usize::try_from(w.len)
        .ok()
        .filter(|&l| l > 0)
        .ok_or_else(|| Error::incompatible("a travelling handle names an impossible length"))?;
    let path = std::ffi::CString::new(format!("/proc/{}/fd/{}", w.pid, w.fd))
        .map_err(|_| Error::invalid_argument("a path holds a NUL byte"))?;
    // SAFETY: a valid NUL-terminated path; flags valid for open.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => gone(),
            _ => Error::os("opening the memory of a travelling handle", e),
        });
    }
    let fd = Fd(fd);
    let st = file_id(fd.0, "the memory of a travelling handle")?;
    // SAFETY: `geteuid` has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let same = st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_uid == uid
        && st.st_dev as u64 == w.dev
        && st.st_ino as u64 == w.ino
        && u64::try_from(st.st_size).ok() == Some(w.len);
    if !same {
        return Err(Error::incompatible(format!(
            "descriptor {} of process {} is not the memory the travelling handle names",
            w.fd, w.pid
        )));
    }
    // The descriptor was checked after it was opened: a process that ended and a pid reused
    // since can only have given another file, which the identity check above refused.
    let map = crate::fsfile::map_shared(fd.0, len, &"the memory of a travelling handle")?;
    // SAFETY: `map` is the fresh `len`-byte shared mapping just made, owned from here by the
    // region; offset 0 is page-aligned and below `len > 0`.
    let region = unsafe { Region::from_mapping(map, len, 0) };
    let raw = fd.0;
    std::mem::forget(fd);
    Ok(region.with_file(raw))
}

/// Something a process keeps alive while a handle of it is in flight.
pub(crate) trait Keep: Send {
    /// `false` once nothing in flight needs it any more.
    fn needed(&self) -> bool;
    /// The object, `(dev, ino)`: one entry per object.
    fn object(&self) -> (u64, u64);
}

/// The kept handles. A spin lock the fork handlers take (see [`hooked`]): a `fork` while
/// another thread holds it would otherwise leave it held for ever in the child, where a worker
/// sending a handle takes it.
static KEPT: SpinLock<Vec<Box<dyn Keep>>> = SpinLock::new(Vec::new());

/// Keeps `k` (one of this process's handles of a serialized object) until it is no longer
/// [`needed`](Keep::needed); drops the entries no longer needed.
pub(crate) fn keep(k: Box<dyn Keep>) {
    hooked();
    let done = KEPT.with(std::thread::yield_now, |kept| {
        let done = take_unneeded(kept);
        if !kept.iter().any(|e| e.object() == k.object()) {
            kept.push(k);
        }
        done
    });
    // Dropped outside the lock: dropping a handle may take the channel registry's lock,
    // which the fork handlers take before this one.
    drop(done);
}

/// Keeps `alive` (the mapping of an object without end counts: a lock, semaphore, event or
/// barrier) for the rest of this process's life, once per object.
pub(crate) fn keep_for_life<T: Send + Sync + 'static>(
    alive: std::sync::Arc<T>,
    object: (u64, u64),
) {
    struct ForLife<T> {
        _alive: std::sync::Arc<T>,
        object: (u64, u64),
    }
    impl<T: Send + Sync> Keep for ForLife<T> {
        fn needed(&self) -> bool {
            true
        }
        fn object(&self) -> (u64, u64) {
            self.object
        }
    }
    keep(Box::new(ForLife {
        _alive: alive,
        object,
    }));
}

/// Drops the kept entries no longer needed.
pub(crate) fn sweep() {
    hooked();
    let done = KEPT.with(std::thread::yield_now, take_unneeded);
    drop(done);
}

/// Moves the entries no longer needed out of `kept`, for the caller to drop after unlocking.
fn take_unneeded(kept: &mut Vec<Box<dyn Keep>>) -> Vec<Box<dyn Keep>> {
    let mut done = Vec::new();
    let mut i = 0;
    while i < kept.len() {
        if kept[i].needed() {
            i += 1;
        } else {
            done.push(kept.swap_remove(i));
        }
    }
    done
}

/// Registers the fork handlers of the travel tables (this module's and the channels'),
/// once: `prepare` takes their locks, after the channel registry's (hooks run in
/// registration order, and no code holds a travel lock while taking the registry's), and
/// both sides release them after the fork.
pub(crate) fn hooked() {
    static HOOKS: procs::ForkHooks = procs::ForkHooks {
        prepare: || {
            KEPT.raw_lock(std::thread::yield_now);
            crate::channel::travel_fork_lock();
        },
        parent: unlock,
        child: unlock,
        room_for_child: || Ok(()),
    };
    fn unlock() {
        crate::channel::travel_fork_unlock();
        KEPT.raw_unlock();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| procs::register_fork_hooks(&HOOKS));
}

/// `serde` error from an `Error` (serialize side).
pub(crate) fn ser_err<E: serde::ser::Error>(e: Error) -> E {
    E::custom(e)
}

/// `serde` error from an `Error` (deserialize side).
pub(crate) fn de_err<E: serde::de::Error>(e: Error) -> E {
    E::custom(e)
}

/// Serialize/Deserialize for a primitive that is only memory (no counts): the whole
/// `ShmBox` handle is kept by the serializer for the rest of its life (one per object).
macro_rules! travelling_page {
    ($ty:ident, $shm:ty, $kind:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let w = crate::travel::describe(self.shm.region(), $kind, "", [0; 4], 0)
                    .map_err(crate::travel::ser_err)?;
                crate::travel::keep_for_life(self.shm.clone(), w.object());
                w.serialize(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let w = crate::travel::Wire::deserialize(d)?;
                let region = crate::travel::open(&w, $kind, "").map_err(crate::travel::de_err)?;
                crate::procs::install_fork_handlers();
                let shm = crate::shm::ShmBox::from_region(region).map_err(crate::travel::de_err)?;
                Ok(Self {
                    shm: std::sync::Arc::new(shm),
                })
            }
        }
    };
}
pub(crate) use travelling_page;
