//! Named objects: a primitive's shared memory in a file named after it, so that any process
//! of the same user — not only forked children — can map it.
//!
//! # Files
//!
//! The object named `jobs` is the file `uniconc.jobs` in `/dev/shm` (memory, like
//! `shm_open`'s objects) or, where that directory does not exist, in the temporary directory.
//! Names are checked by [`validate::name`] (one file name, never a path), opened with
//! `O_NOFOLLOW`, and an existing file must be a regular file owned by this user.
//!
//! # Layout of a file
//!
//! ```text
//! [ NamedHeader (one 4096-byte page) | the primitive's region, exactly as an anonymous one ]
//! ```
//!
//! # Creation: never a half-made object under the name
//!
//! The creator builds the whole object in a private temporary file
//! (`uniconc.~<name>~<pid>.<n>`: `~` cannot be in a name), writes the header, initialises the
//! primitive, and only then gives it the name with `link(2)`, which fails if the name exists:
//! so exactly one of two racing creators wins, and whoever opens the name finds a complete
//! object. A creator killed before the `link` leaves only its temporary file, which the next
//! create in that directory removes (its pid is dead). The header is never written after the
//! link.
//!
//! # Opening: the file is untrusted input
//!
//! Any process of the user can write the file, so the opener checks everything before it
//! maps it: the file type and owner, its size against the header's, the magic and layout
//! version, the kind of primitive, the element type's name, and (through the caller's check)
//! every parameter the layout depends on. Sizes used to index the mapping come from those
//! checked values, kept in the process-private handle. A file truncated *after* it was
//! mapped makes the next access to the lost pages fault (`SIGBUS`), as for any file mapping.
//!
//! # Lifetime
//!
//! A name stays until [`unlink`] removes it: nothing here unlinks on exit or on a peer's
//! death. The primitives' own dead-peer recovery (lock owners, channel members) works on a
//! named object as on an inherited one, so an object whose creator was killed stays usable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use uniconc_core::{Error, ErrorKind, Name, OpenMode, validate};

use crate::fsfile::{Fd, NewFile, TYPE_NAME_BYTES, cpath, map_shared, type_name_bytes};
use crate::procs;
use crate::shm::Region;

/// Bytes before the primitive's region: one page, so the region stays page-aligned.
pub(crate) const HEADER: usize = 4096;

const MAGIC: [u8; 8] = *b"uniconc\0";

/// Layout version of named files; bumped whenever a primitive's shared layout changes, so an
/// object made by an incompatible build is refused rather than misread.
pub(crate) const VERSION: u32 = 2;

/// The kinds of primitive a file can hold (`NamedHeader::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Channel = 1,
    Lock = 2,
    Semaphore = 3,
    Event = 4,
    Barrier = 5,
    Value = 6,
    Array = 7,
    Map = 8,
    List = 9,
}

impl Kind {
    fn label(raw: u32) -> &'static str {
        match raw {
            1 => "a channel",
            2 => "a lock",
            3 => "a semaphore",
            4 => "an event",
            5 => "a barrier",
            6 => "a value",
            7 => "an array",
            8 => "a map",
            9 => "a list",
            _ => "an unknown kind of object",
        }
    }
}

/// The first bytes of a named file. `#[repr(C)]`, plain integers and bytes (any bit pattern
/// is a value: it is read by copying, then checked).
///
/// Invariants (checked on open, in this order): `magic == MAGIC`, `version == VERSION`,
/// `kind` is the kind asked for, `type_name[..type_name_len]` is the element type asked for,
/// `params` pass the primitive's check, and `file_len` is both the file's size and
/// `HEADER` plus the region length those params imply. Written once, before the file has its
/// name; never changed after.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct NamedHeader {
    magic: [u8; 8],
    version: u32,
    kind: u32,
    file_len: u64,
    /// The primitive's parameters (capacity, length, ...), as the primitive defines them.
    params: [u64; 4],
    creator_pid: u32,
    type_name_len: u32,
    type_name: [u8; TYPE_NAME_BYTES],
}

const _: () = assert!(size_of::<NamedHeader>() <= HEADER);

/// What a primitive asks for when it creates or opens a name.
pub(crate) struct Spec<'a> {
    pub(crate) kind: Kind,
    /// `std::any::type_name` of the element type, `""` for none. Truncated to 192 bytes.
    pub(crate) type_name: &'a str,
    /// Stored when creating.
    pub(crate) params: [u64; 4],
    /// Bytes of the primitive's region when creating.
    pub(crate) len: usize,
}

/// A mapped named object.
pub(crate) struct Attached {
    /// The primitive's region (after the header).
    pub(crate) region: Region,
    /// The parameters stored in the file (checked by the caller's `check`).
    pub(crate) params: [u64; 4],
    /// The file, open (read-write, close-on-exec) through a description of this process's
    /// own: a channel keeps it for its members' holder locks (`crate::holder`).
    pub(crate) file: Fd,
}

/// Creates or opens `name` as `spec` says, per its mode.
///
/// `init` runs on a created object's region before the object gets its name (phase two of
/// the initialisation; the region is all-zero before it). `check` runs on an existing
/// object's stored params: it returns the region length they imply, or why they are not what
/// this caller asked for (`Incompatible`).
pub(crate) fn attach(
    name: &Name,
    spec: &Spec<'_>,
    init: impl Fn(&Region) -> Result<(), Error>,
    check: impl Fn(&[u64; 4]) -> Result<usize, Error>,
) -> Result<Attached, Error> {
    validate::name(name.as_str())?;
    let path = path_of(name.as_str());
    match name.mode() {
        OpenMode::Open => open(name, &path, spec, &check),
        OpenMode::Create => create(name, &path, spec, &init),
        OpenMode::OpenOrCreate => {
            // A name removed between our failed create and our open (or made between our
            // failed open and our create) sends us round again; a few rounds always settle
            // unless other processes keep creating and unlinking the name.
            for _ in 0..64 {
                match open(name, &path, spec, &check) {
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    r => return r,
                }
                match create(name, &path, spec, &init) {
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    r => return r,
                }
            }
            Err(Error::os(
                format!("opening or creating the named object {name}"),
                std::io::Error::other("the name kept appearing and disappearing"),
            ))
        }
    }
}

/// [`attach`] for a primitive of one page without parameters that must match: `params` are
/// stored when creating, and any stored params are accepted (`check_params` may refuse).
pub(crate) fn attach_page(
    name: &Name,
    kind: Kind,
    params: [u64; 4],
    init: impl Fn(&Region) -> Result<(), Error>,
    check_params: impl Fn(&[u64; 4]) -> Result<(), Error>,
) -> Result<Region, Error> {
    let spec = Spec {
        kind,
        type_name: "",
        params,
        len: 4096,
    };
    attach(name, &spec, init, |p| check_params(p).map(|()| 4096)).map(|a| a.region)
}

/// Removes the name: `Ok(false)` if it did not exist.
pub(crate) fn unlink(name: &str) -> Result<bool, Error> {
    validate::name(name)?;
    let path = cpath(&path_of(name))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::unlink(path.as_ptr()) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(Error::os(format!("unlinking the named object {name:?}"), e))
    }
}

/// The directory named objects live in.
pub(crate) fn dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn path_of(name: &str) -> PathBuf {
    dir().join(format!("uniconc.{name}"))
}

fn open(
    name: &Name,
    path: &Path,
    spec: &Spec<'_>,
    check: &dyn Fn(&[u64; 4]) -> Result<usize, Error>,
) -> Result<Attached, Error> {
    let c = cpath(path)?;
    // SAFETY: a valid NUL-terminated path; flags and mode are valid for open.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Error::not_found(format!("no object is named {name}")),
            Some(libc::ELOOP) => Error::incompatible(format!(
                "the name {name} is a symbolic link ({}), not a uniconc object",
                path.display()
            )),
            _ => Error::os(format!("opening the named object {name}"), e),
        });
    }
    let fd = Fd(fd);
    // SAFETY: an all-zero `stat` is a valid value; `fstat` only writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and out-pointer.
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return Err(Error::last_os_error(format!(
            "inspecting the named object {name}"
        )));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::incompatible(format!(
            "the name {name} ({}) is not a regular file",
            path.display()
        )));
    }
    // SAFETY: `geteuid` has no preconditions.
    if st.st_uid != unsafe { libc::geteuid() } {
        return Err(Error::incompatible(format!(
            "the named object {name} ({}) belongs to another user (uid {})",
            path.display(),
            st.st_uid
        )));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size < HEADER as u64 {
        return Err(Error::incompatible(format!(
            "the named object {name} is truncated ({size} bytes, not even a header)"
        )));
    }
    let mut hdr = std::mem::MaybeUninit::<NamedHeader>::zeroed();
    let want = size_of::<NamedHeader>();
    // SAFETY: a valid descriptor; the buffer is `want` writable bytes.
    let got = unsafe { libc::pread(fd.0, hdr.as_mut_ptr().cast(), want, 0) };
    if got != want as isize {
        return Err(Error::incompatible(format!(
            "could not read the header of the named object {name}"
        )));
    }
    // SAFETY: zero-initialised, then (partly) overwritten with bytes; every bit pattern is a
    // `NamedHeader` (integers and byte arrays only).
    let hdr = unsafe { hdr.assume_init() };
    let len = validate_header(name, &hdr, spec, size, check)?;
    let file_len = HEADER + len;
    let map = map_shared(fd.0, file_len, &format!("the named object {name}"))?;
    // SAFETY: `map` is the fresh `file_len`-byte shared mapping just made, owned from here
    // by the region; `HEADER < file_len` and is page-aligned.
    let region = unsafe { Region::from_mapping(map, file_len, HEADER) };
    Ok(Attached {
        region,
        params: hdr.params,
        file: fd,
    })
}

/// Checks an existing object's header; returns its region length.
fn validate_header(
    name: &Name,
    hdr: &NamedHeader,
    spec: &Spec<'_>,
    size: u64,
    check: &dyn Fn(&[u64; 4]) -> Result<usize, Error>,
) -> Result<usize, Error> {
    if hdr.magic != MAGIC {
        return Err(Error::incompatible(format!(
            "the file of {name} is not a uniconc object (bad magic)"
        )));
    }
    if hdr.version != VERSION {
        return Err(Error::incompatible(format!(
            "the named object {name} has layout version {}, this build reads version {VERSION}",
            hdr.version
        )));
    }
    if hdr.kind != spec.kind as u32 {
        return Err(Error::incompatible(format!(
            "the named object {name} is {}, not {}",
            Kind::label(hdr.kind),
            Kind::label(spec.kind as u32)
        )));
    }
    let n = (hdr.type_name_len as usize).min(TYPE_NAME_BYTES);
    let (theirs, ours) = (&hdr.type_name[..n], type_name_bytes(spec.type_name));
    if theirs != ours {
        return Err(Error::incompatible(format!(
            "the named object {name} holds `{}`, not `{}`",
            String::from_utf8_lossy(theirs),
            String::from_utf8_lossy(ours)
        )));
    }
    let len = check(&hdr.params)?;
    let expect = (HEADER as u64).checked_add(len as u64);
    if expect != Some(hdr.file_len) || hdr.file_len != size {
        return Err(Error::incompatible(format!(
            "the named object {name} is {size} bytes long where its header says {} and its \
             parameters imply {}: truncated or corrupted",
            hdr.file_len,
            expect.map_or_else(|| "an overflow".to_string(), |e| e.to_string())
        )));
    }
    Ok(len)
}

fn create(
    name: &Name,
    path: &Path,
    spec: &Spec<'_>,
    init: &dyn Fn(&Region) -> Result<(), Error>,
) -> Result<Attached, Error> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("/"));
    sweep_stale_temporaries(dir);
    let file_len = HEADER
        .checked_add(spec.len)
        .ok_or_else(|| Error::invalid_argument("a named object's size overflows"))?;
    // Relaxed: only makes temporary names unique within this process.
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp_path = dir.join(format!(
        "uniconc.~{}~{}.{seq}",
        name.as_str(),
        procs::my_pid()
    ));
    let what = format!("the named object {name}");
    let file = NewFile::create(&tmp_path, 0o600, file_len, &what)?;
    let map = file.map(file_len, &what)?;
    // SAFETY: the fresh `file_len`-byte mapping just made, owned from here by the region.
    let region = unsafe { Region::from_mapping(map, file_len, HEADER) };
    let mut type_name = [0u8; TYPE_NAME_BYTES];
    let t = type_name_bytes(spec.type_name);
    type_name[..t.len()].copy_from_slice(t);
    let hdr = NamedHeader {
        magic: MAGIC,
        version: VERSION,
        kind: spec.kind as u32,
        file_len: file_len as u64,
        params: spec.params,
        creator_pid: procs::my_pid(),
        type_name_len: t.len() as u32,
        type_name,
    };
    // SAFETY: the header page is the first `HEADER` bytes of the mapping, writable, aligned
    // to a page; nobody else can see this file yet (it has no name but the temporary one,
    // which only a sweeper of *dead* creators' files unlinks).
    unsafe { map.as_ptr().cast::<NamedHeader>().write(hdr) };
    init(&region)?;
    let kept = file.duplicate(&what)?;
    file.publish(
        path,
        || Error::already_exists(format!("an object is already named {name}")),
        &what,
    )?;
    Ok(Attached {
        region,
        params: spec.params,
        file: kept,
    })
}

/// Removes the temporary files of creators that died before naming their object.
fn sweep_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix("uniconc.~")) else {
            continue;
        };
        let Some(pid) = rest
            .rsplit_once('~')
            .and_then(|(_, tail)| tail.split_once('.'))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let dead = pid > 0
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if dead {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(len: usize) -> Spec<'static> {
        Spec {
            kind: Kind::Event,
            type_name: "",
            params: [len as u64, 0, 0, 0],
            len,
        }
    }

    fn check(p: &[u64; 4]) -> Result<usize, Error> {
        Ok(p[0] as usize)
    }

    fn unique(tag: &str) -> String {
        format!("unit-{tag}-{}", std::process::id())
    }

    #[test]
    fn create_then_open_sees_the_same_memory() {
        let n = unique("same");
        let a = attach(
            &Name::new(&n, OpenMode::Create),
            &spec(4096),
            |_| Ok(()),
            check,
        )
        .unwrap();
        // SAFETY: in bounds of the 4096-byte region.
        unsafe { a.region.base().write(42) };
        let b = attach(
            &Name::new(&n, OpenMode::Open),
            &spec(4096),
            |_| Ok(()),
            check,
        )
        .unwrap();
        // SAFETY: in bounds.
        assert_eq!(unsafe { b.region.base().read() }, 42);
        assert!(unlink(&n).unwrap());
        assert!(!unlink(&n).unwrap());
    }

    #[test]
    fn a_failed_init_leaves_no_name_and_no_file() {
        let n = unique("fail");
        let e = attach(
            &Name::new(&n, OpenMode::Create),
            &spec(4096),
            |_| Err(Error::invalid_argument("no")),
            check,
        );
        assert!(e.is_err());
        assert!(!path_of(&n).exists());
        let leftovers = std::fs::read_dir(dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(&n))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_stale_temporary_of_a_dead_creator_is_swept() {
        let n = unique("stale");
        // A pid that cannot be alive (above the kernel's pid_max).
        let stale = dir().join(format!("uniconc.~{n}~{}.0", i32::MAX));
        std::fs::write(&stale, b"half made").unwrap();
        let a = attach(
            &Name::new(&n, OpenMode::Create),
            &spec(4096),
            |_| Ok(()),
            check,
        )
        .unwrap();
        assert!(!stale.exists());
        drop(a);
        unlink(&n).unwrap();
    }
}
