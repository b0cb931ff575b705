//! File-backed shared memory (Python's `mmap` over a file): an [`Array`](crate::Array) whose
//! elements live in a file at a path of the caller's choice, and [`FileRegion`], the raw bytes
//! of any regular file.
//!
//! Both are `MAP_SHARED` mappings of the file: every process that maps it (a forked child, an
//! unrelated program, a later run) sees the same bytes, the data outlives the processes, and
//! `flush` (`msync(MS_SYNC)`) writes the dirty pages to the disk.
//!
//! # Layout of an array file
//!
//! ```text
//! offset    0  ArrayFileHeader (below), the rest of the first 1024 bytes zero
//! offset 1024  FileLock: the boot the lock word belongs to (u64), then the array's RawLock
//! offset 4096  the elements: len * size_of::<T>() bytes, packed, in the host's byte order
//! ```
//!
//! The file is exactly `4096 + len * size_of::<T>()` bytes. Another program reads the
//! elements at offset 4096 (numpy: `np.memmap(path, dtype="<u4", offset=4096)`), and the
//! header fields at the offsets of [`ArrayFileHeader`].
//!
//! # The file is untrusted input
//!
//! It is opened with `O_NOFOLLOW` (a symbolic link is refused) and must be a regular file.
//! The header is read by copy (`pread`) and checked (magic, layout version, byte order, the
//! element type's name, size and alignment, the length against the file's size) before
//! anything is mapped; the length that indexes the mapping is the checked one, kept in the
//! process-private handle. A file truncated *after* it was mapped makes the next access to
//! the lost pages fault (`SIGBUS`), as for any file mapping.
//!
//! # The lock of a file that outlives a boot
//!
//! The lock word holds its holder's pid; a holder that died is taken over by the next locker
//! (`OwnerDied`). A file can outlive the machine's boot, and a pid of the old boot may belong
//! to a live process of the new one. So the lock sits next to the boot it was last used in
//! (a hash of the kernel's boot id): the first opener in a new boot clears the stale word
//! before anyone can wait on it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use uniconc_core::Error;

use crate::fsfile::{Fd, NewFile, TYPE_NAME_BYTES, cpath, map_shared, type_name_bytes};
use crate::lock::RawLock;
use crate::procs;
use crate::shm::{Region, ShmSafe};

/// Where the elements start: one page, so they are page-aligned in every mapping.
pub(crate) const DATA_OFFSET: usize = 4096;
/// Where the [`FileLock`] sits in the header page.
pub(crate) const LOCK_OFFSET: usize = 1024;
/// Where the array's `RawLock` sits (after the lock's boot word).
pub(crate) const RAW_LOCK_OFFSET: usize = LOCK_OFFSET + 8;

const MAGIC: [u8; 8] = *b"uniconcA";
/// Layout version of array files; bumped whenever the layout changes, so a file made by an
/// incompatible build is refused rather than misread.
const VERSION: u32 = 1;
/// Written in the host's byte order: a host of the other order reads `0x04030201`.
const BYTE_ORDER: u32 = 0x0102_0304;

/// The first bytes of an array file. `#[repr(C)]`, plain integers and bytes at fixed offsets
/// (magic 0, version 8, byte order 12, data offset 16, length 24, element size 32, element
/// alignment 40, type name length 48, type name 56..248), in the host's byte order.
///
/// Invariants (checked on open): `magic == MAGIC`, `version == VERSION`,
/// `byte_order == BYTE_ORDER`, `data_offset == DATA_OFFSET`, the element type's name, size
/// and alignment are the opener's, and the file is `DATA_OFFSET + len * elem_size` bytes.
/// Written once, before the file has its name; never changed after.
#[derive(Clone, Copy)]
#[repr(C)]
struct ArrayFileHeader {
    magic: [u8; 8],
    version: u32,
    byte_order: u32,
    data_offset: u64,
    len: u64,
    elem_size: u64,
    elem_align: u64,
    type_name_len: u32,
    _pad: u32,
    type_name: [u8; TYPE_NAME_BYTES],
}

const _: () = assert!(size_of::<ArrayFileHeader>() <= LOCK_OFFSET);

/// The array's lock in the header page. `#[repr(C)]`, atomics only; all-zero is "unlocked,
/// boot unknown".
///
/// Invariant: `lock`'s word was written in the boot whose hash is `boot` (0: unknown). Only
/// [`claim_boot`] changes `boot`, and clears a stale lock word when it does.
#[repr(C)]
pub(crate) struct FileLock {
    boot: AtomicU64,
    lock: RawLock,
}

// SAFETY: repr(C), atomics only, all-zero is a valid (unlocked) state.
unsafe impl ShmSafe for FileLock {}

const _: () = assert!(LOCK_OFFSET + size_of::<FileLock>() <= DATA_OFFSET);
const _: () = assert!(RAW_LOCK_OFFSET == LOCK_OFFSET + std::mem::offset_of!(FileLock, lock));

/// What an array file holds: the element type `T` described by name, size and alignment.
pub(crate) struct Elem {
    pub(crate) type_name: &'static str,
    pub(crate) size: usize,
    pub(crate) align: usize,
}

/// A mapped array file: the whole file as a region (header page included) and its checked
/// element count.
pub(crate) struct MappedArray {
    pub(crate) region: Region,
    pub(crate) len: usize,
}

/// Creates the array file `path` (`AlreadyExists` if the path exists) with `len` zeroed
/// elements.
pub(crate) fn create_array(path: &Path, elem: &Elem, len: usize) -> Result<MappedArray, Error> {
    let bytes = elem
        .size
        .checked_mul(len)
        .and_then(|b| b.checked_add(DATA_OFFSET))
        .ok_or_else(|| Error::invalid_argument("a file-backed array's size overflows"))?;
    let mut type_name = [0u8; TYPE_NAME_BYTES];
    let t = type_name_bytes(elem.type_name);
    type_name[..t.len()].copy_from_slice(t);
    let hdr = ArrayFileHeader {
        magic: MAGIC,
        version: VERSION,
        byte_order: BYTE_ORDER,
        data_offset: DATA_OFFSET as u64,
        len: len as u64,
        elem_size: elem.size as u64,
        elem_align: elem.align as u64,
        type_name_len: t.len() as u32,
        _pad: 0,
        type_name,
    };
    let region = create_file(path, bytes, |region| {
        // SAFETY: the header fits the first page of the `bytes >= DATA_OFFSET`-byte region,
        // which is page-aligned; the file has only its private temporary name: not shared.
        unsafe { region.base().cast::<ArrayFileHeader>().write(hdr) };
        region
            .at::<FileLock>(LOCK_OFFSET)
            .boot
            .store(boot_hash(), Ordering::Relaxed); // published by the link that names it
    })?;
    Ok(MappedArray { region, len })
}

/// Opens the array file `path`, checking it holds elements of `elem`.
pub(crate) fn open_array(path: &Path, elem: &Elem) -> Result<MappedArray, Error> {
    let (fd, size) = open_regular(path)?;
    let shown = path.display();
    if size < DATA_OFFSET as u64 {
        return Err(Error::incompatible(format!(
            "{shown} is {size} bytes: too short for a uniconc array file's header"
        )));
    }
    let mut hdr = std::mem::MaybeUninit::<ArrayFileHeader>::zeroed();
    let want = size_of::<ArrayFileHeader>();
    // SAFETY: a valid descriptor; the buffer is `want` writable bytes.
    let got = unsafe { libc::pread(fd.0, hdr.as_mut_ptr().cast(), want, 0) };
    if got != want as isize {
        return Err(Error::last_os_error(format!(
            "reading the header of {shown}"
        )));
    }
    // SAFETY: zero-initialised, then overwritten with bytes; every bit pattern is an
    // `ArrayFileHeader` (integers and byte arrays only).
    let hdr = unsafe { hdr.assume_init() };
    let len = check_header(&hdr, elem, size, &shown.to_string())?;
    let bytes = usize::try_from(size)
        .map_err(|_| Error::incompatible(format!("{shown} is too large to map")))?;
    let region = map(fd.0, bytes, path)?;
    claim_boot(region.at::<FileLock>(LOCK_OFFSET));
    Ok(MappedArray { region, len })
}

/// Checks an array file's header against the opener's element type and the file's size;
/// returns the element count.
fn check_header(
    hdr: &ArrayFileHeader,
    elem: &Elem,
    size: u64,
    shown: &str,
) -> Result<usize, Error> {
    if hdr.magic != MAGIC {
        return Err(Error::incompatible(format!(
            "{shown} is not a uniconc array file (bad magic)"
        )));
    }
    if hdr.version != VERSION {
        return Err(Error::incompatible(format!(
            "{shown} has array layout version {}, this build reads version {VERSION}",
            hdr.version
        )));
    }
    if hdr.byte_order != BYTE_ORDER {
        return Err(Error::incompatible(format!(
            "{shown} was written on a host of the other byte order"
        )));
    }
    if hdr.data_offset != DATA_OFFSET as u64 {
        return Err(Error::incompatible(format!(
            "{shown} has its data at offset {}, not {DATA_OFFSET}",
            hdr.data_offset
        )));
    }
    let n = (hdr.type_name_len as usize).min(TYPE_NAME_BYTES);
    let (theirs, ours) = (&hdr.type_name[..n], type_name_bytes(elem.type_name));
    if theirs != ours || hdr.elem_size != elem.size as u64 || hdr.elem_align != elem.align as u64 {
        return Err(Error::incompatible(format!(
            "{shown} holds `{}` ({} bytes aligned to {}), not `{}` ({} bytes aligned to {})",
            String::from_utf8_lossy(theirs),
            hdr.elem_size,
            hdr.elem_align,
            String::from_utf8_lossy(ours),
            elem.size,
            elem.align
        )));
    }
    let expect = hdr
        .len
        .checked_mul(hdr.elem_size)
        .and_then(|b| b.checked_add(DATA_OFFSET as u64));
    if expect != Some(size) {
        return Err(Error::incompatible(format!(
            "{shown} is {size} bytes where its header ({} elements of {} bytes) implies {}: \
             truncated or corrupted",
            hdr.len,
            hdr.elem_size,
            expect.map_or_else(|| "an overflow".to_string(), |e| e.to_string())
        )));
    }
    usize::try_from(hdr.len).map_err(|_| Error::incompatible(format!("{shown} is too long")))
}

/// Makes the lock word belong to this boot: the first opener in a new boot clears the word
/// left by the old boot's processes (their pids mean nothing now).
fn claim_boot(fl: &FileLock) {
    let now = boot_hash();
    if now == 0 {
        return; // boot unknown here: keep the word (a dead holder is still taken over)
    }
    let seen = fl.boot.load(Ordering::Acquire);
    if seen == now {
        return;
    }
    // Read before the switch: while `boot` is still the old one, no process of this boot
    // has passed here, so the word is the old boot's (or 0).
    let stale = fl.lock.word_now();
    // AcqRel: exactly one opener wins the switch to this boot; losers (Acquire) see it done
    // or under way, and wait on a word that the winner clears and wakes.
    if fl
        .boot
        .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        fl.lock.clear_stale(stale);
    }
}

/// A hash of the kernel's boot id (Linux), 0 where it is unknown.
fn boot_hash() -> u64 {
    let Ok(id) = std::fs::read("/proc/sys/kernel/random/boot_id") else {
        return 0;
    };
    // FNV-1a: stable across builds (std's hasher is not), 0 avoided.
    let h = id.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h.max(1)
}

/// Writes the region's dirty pages to the file and waits for the disk (`msync(MS_SYNC)`).
pub(crate) fn flush(region: &Region) -> Result<(), Error> {
    // SAFETY: `region` is page-aligned (every region is) and mapped for its length.
    if unsafe { libc::msync(region.base().cast(), region.len(), libc::MS_SYNC) } != 0 {
        return Err(Error::last_os_error("flushing a file mapping to disk"));
    }
    Ok(())
}

/// Opens `path` read-write: not through a symbolic link, and only a regular file; returns it
/// with its size.
fn open_regular(path: &Path) -> Result<(Fd, u64), Error> {
    let c = cpath(path)?;
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO or a device must not wait (it is refused below); it changes
    // nothing for a regular file.
    let flags = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: a valid NUL-terminated path; flags are valid for open.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Error::not_found(format!("no file at {shown}")),
            Some(libc::ELOOP) => Error::invalid_argument(format!(
                "{shown} is a symbolic link: give the path of the file itself"
            )),
            Some(libc::EISDIR) => {
                Error::invalid_argument(format!("{shown} is a directory, not a regular file"))
            }
            _ => Error::os(format!("opening {shown}"), e),
        });
    }
    let fd = Fd(fd);
    // SAFETY: an all-zero `stat` is a valid value; `fstat` only writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and out-pointer.
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return Err(Error::last_os_error(format!("inspecting {shown}")));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::invalid_argument(format!(
            "{shown} is not a regular file"
        )));
    }
    Ok((fd, u64::try_from(st.st_size).unwrap_or(0)))
}

/// Maps the first `len` bytes of the open file `fd` (`len > 0`: checked by callers).
fn map(fd: libc::c_int, len: usize, path: &Path) -> Result<Region, Error> {
    let map = map_shared(fd, len, &path.display())?;
    // SAFETY: `map` is the fresh `len`-byte shared read-write mapping just made, owned from
    // here by the region; offset 0 is page-aligned and `< len`.
    Ok(unsafe { Region::from_mapping(map, len, 0) })
}

/// Creates the regular file `path` of `len` zero bytes, runs `init` on its mapping, and only
/// then gives it its name (`link(2)`: `AlreadyExists` if the path exists), so no opener ever
/// sees a half-made file. The file is made as `.<name>.uniconc~<pid>.<n>` in the same
/// directory; a creator killed before the link leaves that file behind.
fn create_file(path: &Path, len: usize, init: impl FnOnce(&Region)) -> Result<Region, Error> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let shown = path.display();
    let file = path
        .file_name()
        .ok_or_else(|| Error::invalid_argument(format!("{shown} does not name a file")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if len == 0 {
        return Err(Error::invalid_argument(format!(
            "{shown}: a mapped file cannot be empty"
        )));
    }
    // Relaxed: only makes temporary names unique within this process.
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file);
    tmp_name.push(format!(".uniconc~{}.{seq}", procs::my_pid()));
    let new = NewFile::create(&dir.join(tmp_name), 0o666, len, &shown)?;
    let map = new.map(len, &shown)?;
    // SAFETY: `map` is the fresh `len`-byte shared read-write mapping just made, owned from
    // here by the region; offset 0 is page-aligned and `< len` (`len > 0`: checked above).
    let region = unsafe { Region::from_mapping(map, len, 0) };
    init(&region);
    new.publish(
        path,
        || Error::already_exists(format!("{shown} exists (a file is never overwritten)")),
        &shown,
    )?;
    Ok(region)
}

/// The raw bytes of a regular file, mapped shared (Python's `mmap` over a file whose format
/// someone else owns): no header, the length is the file's size when it is opened.
///
/// Every process that maps the file sees the same bytes, including forked children (a
/// clone, or the handle copied by `fork`) and unrelated programs; [`flush`](Self::flush)
/// writes them to the disk. Bytes are copied in and out with [`read_at`](Self::read_at) and
/// [`write_at`](Self::write_at), never lent as references, since any other process may write
/// them at any time: each aligned 8-byte word (and each other byte) is copied whole, but a
/// longer read that races a writer can see part of its write. There is no lock: coordinate
/// writers with one of your own (a [`Lock`](crate::Lock), or the other program's protocol).
///
/// The path is opened with `O_NOFOLLOW` (a symbolic link is refused) and must name a
/// regular, non-empty file. A file truncated *while* it is mapped makes the next access to
/// the lost pages fault (`SIGBUS`), as for any file mapping.
///
/// ```
/// let path = std::env::temp_dir().join(format!("uniconc-doc-region-{}", std::process::id()));
/// std::fs::write(&path, b"hello, world")?;
/// let r = uniconc::process::FileRegion::open(&path)?;
/// assert_eq!(r.len(), 12);
/// r.write_at(7, b"there")?;
/// r.flush()?;
/// assert_eq!(std::fs::read(&path)?, b"hello, there");
/// let mut buf = [0u8; 5];
/// r.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert!(r.write_at(10, b"xyz").is_err()); // past the end: nothing written
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileRegion {
    region: Arc<Region>,
}

impl FileRegion {
    /// Maps the existing regular file `path`, all of it.
    ///
    /// # Errors
    /// `NotFound` if there is no file; `InvalidArgument` if `path` is a symbolic link, not a
    /// regular file, or an empty file; `Os` if it cannot be opened read-write or mapped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let (fd, size) = open_regular(path)?;
        let len = usize::try_from(size).map_err(|_| {
            Error::invalid_argument(format!("{} is too large to map", path.display()))
        })?;
        if len == 0 {
            return Err(Error::invalid_argument(format!(
                "{} is empty: a mapped file needs at least one byte",
                path.display()
            )));
        }
        Ok(Self {
            region: Arc::new(map(fd.0, len, path)?),
        })
    }

    /// Creates the file `path` with `len` zero bytes and maps it. The file appears whole (it
    /// is made under a temporary name, then linked), and an existing file is never
    /// overwritten.
    ///
    /// # Errors
    /// `AlreadyExists` if `path` exists; `InvalidArgument` if `len` is 0; `Os` if the file
    /// cannot be created, sized or mapped.
    pub fn create(path: impl AsRef<Path>, len: usize) -> Result<Self, Error> {
        Ok(Self {
            region: Arc::new(create_file(path.as_ref(), len, |_| {})?),
        })
    }

    /// The length in bytes (the file's size when it was mapped).
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always false: a mapped file has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Copies `buf.len()` bytes from `offset` into `buf`.
    ///
    /// # Errors
    /// `InvalidArgument` if the range is not inside the file (`buf` is then untouched).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let src = self.range(offset, buf.len())?;
        let mut i = 0;
        while i < buf.len() {
            // Relaxed: the bytes promise no order among themselves; a caller that needs one
            // takes its own lock, whose Acquire/Release orders these accesses.
            // SAFETY: `src + i` is inside the mapping (`range` checked `offset + len`), which
            // lives as long as `self`; every access to it is atomic, so a concurrent writer
            // (a thread or another process) is no data race; `u8`/`u64` accept any bits.
            unsafe {
                let p = src.add(i);
                if (p as usize) % 8 == 0 && buf.len() - i >= 8 {
                    let w = AtomicU64::from_ptr(p.cast()).load(Ordering::Relaxed);
                    buf[i..i + 8].copy_from_slice(&w.to_ne_bytes());
                    i += 8;
                } else {
                    buf[i] = AtomicU8::from_ptr(p).load(Ordering::Relaxed);
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Copies `data` into the file at `offset`.
    ///
    /// # Errors
    /// `InvalidArgument` if the range is not inside the file (nothing is then written).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let dst = self.range(offset, data.len())?;
        let mut i = 0;
        while i < data.len() {
            // SAFETY: as in `read_at`, for stores.
            unsafe {
                let p = dst.add(i);
                if (p as usize) % 8 == 0 && data.len() - i >= 8 {
                    let w = u64::from_ne_bytes(data[i..i + 8].try_into().expect("8 bytes"));
                    AtomicU64::from_ptr(p.cast()).store(w, Ordering::Relaxed);
                    i += 8;
                } else {
                    AtomicU8::from_ptr(p).store(data[i], Ordering::Relaxed);
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Writes the dirty pages to the file and waits for the disk (`msync(MS_SYNC)`).
    ///
    /// # Errors
    /// `Os` if the kernel reports a write error.
    pub fn flush(&self) -> Result<(), Error> {
        flush(&self.region)
    }

    /// The address of `offset` if `offset .. offset + len` is inside the mapping.
    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => {
                // SAFETY: `offset <= end <= len`: inside (or one past) the mapping.
                Ok(unsafe { self.region.base().add(offset) })
            }
            _ => Err(Error::invalid_argument(format!(
                "bytes {offset}..{offset}+{len} are outside the {}-byte file",
                self.len()
            ))),
        }
    }
}
