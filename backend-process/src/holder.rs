//! Holder locks: a process that holds handles of a shared object keeps one byte of the
//! object's file locked, and the kernel releases that lock when the process `exec`s another
//! program or ends (SIGKILL included). Its pid and start time cannot tell those apart: they
//! stay the same across `exec`, so a program started by `fork` + `exec` would otherwise look
//! like the process that held the handles until it exits.
//!
//! The locks are open file description locks (`F_OFD_SETLK`, Linux 3.15): they belong to the
//! open file description, which `exec` drops with the close-on-exec descriptor, and they are
//! not tied to the pid. `fork` shares open file descriptions, so:
//!
//! - a forked child opens the file anew ([`reopen_own`], from the atfork child handler)
//!   before it takes a lock of its own: a lock on the shared description would also be the
//!   parent's, and outlive the child's `exec`;
//! - a process tests other holders' bytes ([`is_held`]) only through a description of its
//!   own: a description shared with the holder finds no conflict with the holder's lock.
//!
//! One byte per process slot, at [`BASE`] + the slot's index (far past the data, so no byte
//! lock on the content is ever confused with one; locks may lie past the end of a file).
//! Write locks: a slot's byte has one holder, and a stale holder (a description a process
//! shared by a fork without the handlers, still open) makes the next owner's lock fail, so it
//! is then told alive or dead by its pid alone.
//!
//! Without OFD locks (other Unixes, or `--cfg uniconc_fallback`) nothing is locked and every
//! byte reads as held: a process is told gone by its pid and start time alone.
//!
//! Every function here is async-signal-safe (raw `open`, `dup3`, `fcntl`, `close`).

/// The offset of slot 0's byte.
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
const BASE: i64 = 1 << 40;

/// Takes the lock on slot `index`'s byte of `fd`'s file through `fd`'s open file
/// description, without waiting: `true` if it is held now.
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
pub(crate) fn lock(fd: libc::c_int, index: u32) -> bool {
    let mut fl = byte(index, libc::F_WRLCK);
    loop {
        // SAFETY: `fl` is a valid, initialised `flock`; an invalid `fd` is reported as EBADF.
        if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl) } == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// `true` unless no open file description other than `fd`'s holds a lock on slot
/// `index`'s byte. An error (one that the checks cannot tell from "held") reads as held.
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
pub(crate) fn is_held(fd: libc::c_int, index: u32) -> bool {
    let mut fl = byte(index, libc::F_WRLCK);
    loop {
        // SAFETY: `fl` is a valid, initialised `flock` the kernel overwrites with the first
        // conflicting lock, or sets to `F_UNLCK`.
        if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) } == 0 {
            return fl.l_type != libc::F_UNLCK as libc::c_short;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return true;
        }
    }
}

/// Makes `fd` an open file description of this process's own: opens the file it refers to
/// anew (`/proc/self/fd/<fd>`) and puts the new description under the same number,
/// close-on-exec. The old description stays with whoever else holds it (the parent after a
/// fork). `false` if that failed: `fd` is unchanged.
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
pub(crate) fn reopen_own(fd: libc::c_int) -> bool {
    let Ok(n) = u32::try_from(fd) else {
        return false;
    };
    let mut path = crate::procs::ProcPath::new();
    path.push(b"/proc/self/fd/");
    path.push_decimal(n);
    // SAFETY: `path` is NUL-terminated (`ProcPath`); flags valid for open.
    let new = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if new < 0 {
        return false;
    }
    // SAFETY: both descriptors are open; `dup3` closes the old description's `fd` atomically.
    let ok = unsafe { libc::dup3(new, fd, libc::O_CLOEXEC) } == fd;
    // SAFETY: `new` was opened above and is closed once (its description lives on as `fd`).
    unsafe { libc::close(new) };
    ok
}

/// `false` only if process `pid` maps nothing of the file `fd` refers to (its
/// `/proc/<pid>/maps` names no mapping of that device and inode): a holder whose lock is gone
/// but whose mappings stay closed its descriptor and runs on, where one that `exec`'d left
/// its mappings with its old image. `true` when that cannot be read (the caller then keeps
/// to what the lock says). Not async-signal-safe (it allocates): for reapers only.
#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
pub(crate) fn maps_file(pid: u32, fd: libc::c_int) -> bool {
    // SAFETY: an all-zero `stat` is a valid value for `fstat` to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid `stat` to write; an invalid `fd` is reported as EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return true;
    }
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return true;
    };
    let (major, minor) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    // `address perms offset major:minor inode path`, the numbers of the device in hex.
    maps.lines().any(|line| {
        let mut fields = line.split_ascii_whitespace().skip(3);
        let (Some(dev), Some(inode)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((maj, min)) = dev.split_once(':') else {
            return false;
        };
        inode.parse::<u64>() == Ok(st.st_ino)
            && u32::from_str_radix(maj, 16) == Ok(major)
            && u32::from_str_radix(min, 16) == Ok(minor)
    })
}

#[cfg(all(target_os = "linux", not(uniconc_fallback)))]
fn byte(index: u32, kind: libc::c_int) -> libc::flock {
    // SAFETY: an all-zero `flock` is a valid value (`l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = BASE + i64::from(index);
    fl.l_len = 1;
    fl
}

/// No OFD locks: nothing is locked.
#[cfg(any(not(target_os = "linux"), uniconc_fallback))]
pub(crate) fn lock(_fd: libc::c_int, _index: u32) -> bool {
    false
}

/// No OFD locks: every byte reads as held.
#[cfg(any(not(target_os = "linux"), uniconc_fallback))]
pub(crate) fn is_held(_fd: libc::c_int, _index: u32) -> bool {
    true
}

/// No OFD locks: no holder is ever found gone by its lock, so this is never asked.
#[cfg(any(not(target_os = "linux"), uniconc_fallback))]
pub(crate) fn maps_file(_pid: u32, _fd: libc::c_int) -> bool {
    true
}

/// No OFD locks: nothing to reopen for.
#[cfg(any(not(target_os = "linux"), uniconc_fallback))]
pub(crate) fn reopen_own(_fd: libc::c_int) -> bool {
    false
}

#[cfg(all(test, target_os = "linux", not(uniconc_fallback)))]
mod tests {
    use super::*;

    fn memfd() -> libc::c_int {
        // SAFETY: a valid NUL-terminated name; flags valid.
        let fd = unsafe { libc::memfd_create(c"holder-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        fd
    }

    #[test]
    fn a_lock_is_seen_through_another_description_only() {
        let a = memfd();
        // SAFETY: `a` is open; `dup` shares its description.
        let shared = unsafe { libc::dup(a) };
        assert!(lock(a, 3));
        assert!(!is_held(a, 3), "its own description conflicts with nothing");
        assert!(!is_held(shared, 3), "nor does a descriptor sharing it");
        // A descriptor of its own, as a forked child makes one.
        assert!(reopen_own(shared));
        assert!(is_held(shared, 3));
        assert!(!is_held(shared, 4), "one byte per slot");
        assert!(!lock(shared, 3), "a slot's byte has one holder");
        assert!(lock(shared, 4));
        assert!(is_held(a, 4));
        // SAFETY: opened above, closed once each.
        unsafe { libc::close(a) };
        assert!(
            !is_held(shared, 3),
            "closing the description releases its lock"
        );
        // SAFETY: as above.
        unsafe { libc::close(shared) };
    }

    #[test]
    fn a_mapping_of_the_file_is_found_in_proc_maps() {
        let fd = memfd();
        let other = memfd();
        // SAFETY: `fd` is open; one page is within the size set just before.
        let p = unsafe {
            assert_eq!(libc::ftruncate(fd, 4096), 0);
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let me = std::process::id();
        assert!(maps_file(me, fd));
        assert!(!maps_file(me, other), "a file this process does not map");
        // SAFETY: mapped above, unmapped once; the descriptors are closed once each.
        unsafe {
            libc::munmap(p, 4096);
            libc::close(other);
        }
        assert!(!maps_file(me, fd), "unmapped");
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}
