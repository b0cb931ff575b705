//! Shared memory: `MAP_SHARED` mappings of a memory file of the process's own (`memfd`; an
//! anonymous mapping where there is none) made before `fork`, so every forked child sees the
//! same pages (memmap2's `map_anon` is `MAP_PRIVATE`: a child's writes would stay invisible,
//! so it is not used). The file's descriptor stays open with the mapping, so a handle can
//! travel to a process that did not inherit it (`travel.rs`).
//!
//! # Layout rules
//!
//! Every structure placed in a region is `#[repr(C)]`, holds only atomics and plain integers
//! (no pointers: each process maps the region at its own address, so positions are offsets),
//! and is valid when all-zero, which is what a fresh anonymous mapping holds. That makes
//! initialisation two-phase without a window of invalid memory: phase one is the zeroed
//! mapping (already a valid, empty structure), phase two stores the non-zero fields before the
//! handle is returned, i.e. before any other process can exist that sees the region.
//!
//! Mapped memory is shared with other processes and so is untrusted: sizes and offsets used to
//! index it come from the process-private handle (copied at creation), never from the region;
//! values read from the region are validated before use.

use std::marker::PhantomData;
use std::ptr::NonNull;

use uniconc_core::Error;

/// A structure that may live in shared memory.
///
/// # Safety
/// Implementors are `#[repr(C)]`, contain no pointers or references, are valid for the
/// all-zero bit pattern, and are sound to access concurrently through `&Self` (all mutable
/// fields are atomics or guarded by a protocol documented on the type).
pub(crate) unsafe trait ShmSafe: Sync {}

/// One shared mapping (anonymous, or a named object's file, see `named`), or the part of it
/// after a named object's header; unmapped on drop (other processes keep their own mapping).
#[derive(Debug)]
pub(crate) struct Region {
    /// Where the region starts: the mapping's start, or a page-aligned offset into it.
    ptr: NonNull<u8>,
    len: usize,
    /// The whole mapping, unmapped on drop.
    map: NonNull<u8>,
    map_len: usize,
    /// The memory file behind the mapping (a `memfd`, close-on-exec, so forked children
    /// inherit it under the same number), kept open so that another process can open it
    /// through `/proc/<pid>/fd/<fd>` when a handle travels (`travel.rs`); `-1` where the
    /// mapping has no file of its own (a named object's, or where `memfd_create` is missing).
    /// A named channel keeps its file here too, for its holder locks (`crate::holder`); its
    /// ends never travel.
    fd: libc::c_int,
}

// SAFETY: the region is plain memory; every access to it goes through `ShmSafe` structures or
// protocols that synchronise with atomics, so it can be used from any thread.
unsafe impl Send for Region {}
// SAFETY: as for `Send`.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` zeroed bytes shared with future forked children. With `lazy`, no swap is
    /// reserved (`MAP_NORESERVE`); pages are committed only when first touched, as for any
    /// anonymous mapping.
    pub(crate) fn new(len: usize, lazy: bool) -> Result<Self, Error> {
        if len == 0 {
            return Err(Error::invalid_argument("a shared region cannot be empty"));
        }
        let fd = memory_file(len)?;
        let mut flags = libc::MAP_SHARED;
        if fd < 0 {
            flags |= libc::MAP_ANONYMOUS;
        }
        if lazy {
            flags |= libc::MAP_NORESERVE;
        }
        // SAFETY: a fresh shared mapping (of our own memory file, or anonymous) at an address
        // of the kernel's choice: no existing memory is affected; the arguments are valid.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = Error::last_os_error(format!("mapping {len} bytes of shared memory"));
            if fd >= 0 {
                // SAFETY: the descriptor `memory_file` just opened, closed once.
                unsafe { libc::close(fd) };
            }
            return Err(e);
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::invalid_argument("mmap returned a null mapping"))?;
        Ok(Self {
            ptr,
            len,
            map: ptr,
            map_len: len,
            fd,
        })
    }

    /// The memory file behind the whole mapping (`-1`: none), and the mapping's length.
    pub(crate) fn file(&self) -> (libc::c_int, usize) {
        (self.fd, self.map_len)
    }

    /// Takes ownership of `fd`, the open file `map` maps (see [`file`](Self::file)).
    pub(crate) fn with_file(mut self, fd: libc::c_int) -> Self {
        self.fd = fd;
        self
    }

    /// Takes ownership of the mapping `map .. map + map_len` and makes a region of the
    /// `map_len - offset` bytes after `offset`.
    ///
    /// # Safety
    /// `map`/`map_len` are exactly a live `MAP_SHARED` mapping, readable and writable, that
    /// nothing else unmaps; `offset < map_len` is a multiple of 4096 (so the region is
    /// page-aligned, as [`new`](Self::new)'s).
    pub(crate) unsafe fn from_mapping(map: NonNull<u8>, map_len: usize, offset: usize) -> Self {
        assert!(offset < map_len && offset % 4096 == 0, "bad region offset");
        // SAFETY: `offset < map_len`: inside the mapping (the caller's contract).
        let ptr = unsafe { NonNull::new_unchecked(map.as_ptr().add(offset)) };
        Self {
            ptr,
            len: map_len - offset,
            map,
            map_len,
            fd: -1,
        }
    }

    /// Base address of the mapping in this process (page-aligned).
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A shared reference to the `H` at byte `offset`.
    ///
    /// # Panics
    /// If `H` does not fit at `offset` or `offset` is misaligned for `H` (a bug in a layout).
    pub(crate) fn at<H: ShmSafe>(&self, offset: usize) -> &H {
        let end = offset
            .checked_add(size_of::<H>())
            .expect("layout offset overflows");
        assert!(end <= self.len, "layout does not fit its region");
        assert_eq!(
            (self.base() as usize + offset) % align_of::<H>(),
            0,
            "misaligned layout"
        );
        // SAFETY: in bounds and aligned (checked above); the region is mapped for our lifetime;
        // `H: ShmSafe` is valid for any state the region can hold (all-zero or written by this
        // crate's protocols through `&H`) and only accessed through shared references.
        unsafe { &*self.base().add(offset).cast::<H>() }
    }

    /// A slice of `n` `H` starting at byte `offset`.
    ///
    /// # Panics
    /// As for [`at`](Self::at).
    #[inline]
    pub(crate) fn slice_at<H: ShmSafe>(&self, offset: usize, n: usize) -> &[H] {
        let bytes = size_of::<H>()
            .checked_mul(n)
            .expect("layout size overflows");
        let end = offset.checked_add(bytes).expect("layout offset overflows");
        assert!(end <= self.len, "layout does not fit its region");
        assert_eq!(
            (self.base() as usize + offset) % align_of::<H>(),
            0,
            "misaligned layout"
        );
        // SAFETY: as for `at`, for `n` consecutive elements.
        unsafe { std::slice::from_raw_parts(self.base().add(offset).cast::<H>(), n) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly the mapping made in `new` (or handed over to
        // `from_mapping`), and no reference into it outlives `self` (every accessor borrows
        // `self`).
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
        if self.fd >= 0 {
            // SAFETY: the descriptor this region owns (every process has its own copy of the
            // number: fork duplicates the table), closed once.
            unsafe { libc::close(self.fd) };
        }
    }
}

/// A `len`-byte memory file (`memfd`, close-on-exec, never reserving swap up front: pages
/// are committed when first touched, as for an anonymous mapping), or `-1` where the system
/// has none (then the mapping is anonymous and its handles cannot travel).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn memory_file(len: usize) -> Result<libc::c_int, Error> {
    // SAFETY: a valid NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(c"uniconc".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Ok(-1);
    }
    let Ok(off) = libc::off_t::try_from(len) else {
        // SAFETY: the descriptor just opened, closed once.
        unsafe { libc::close(fd) };
        return Err(Error::invalid_argument(format!(
            "{len} bytes of shared memory do not fit a file"
        )));
    };
    // SAFETY: a descriptor we own; extends the empty file with zero bytes.
    if unsafe { libc::ftruncate(fd, off) } != 0 {
        let e = Error::last_os_error(format!("sizing {len} bytes of shared memory"));
        // SAFETY: as above.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn memory_file(_len: usize) -> Result<libc::c_int, Error> {
    Ok(-1)
}

/// A region whose first bytes hold an `H` header.
#[derive(Debug)]
pub(crate) struct ShmBox<H> {
    region: Region,
    _marker: PhantomData<H>,
}

impl<H: ShmSafe> ShmBox<H> {
    /// Maps a region of `len` bytes (at least `size_of::<H>()`), its header zeroed.
    pub(crate) fn new(len: usize, lazy: bool) -> Result<Self, Error> {
        let region = Region::new(len.max(size_of::<H>()), lazy)?;
        // Checks once that the header fits and is aligned, so `header` need not.
        region.at::<H>(0);
        Ok(Self {
            region,
            _marker: PhantomData,
        })
    }

    /// A box over `region` (a named object's), whose header must fit at its start.
    ///
    /// # Errors
    /// `Incompatible` if the region is too small for `H`.
    pub(crate) fn from_region(region: Region) -> Result<Self, Error> {
        if region.len() < size_of::<H>() {
            return Err(Error::incompatible("a named object's memory is too small"));
        }
        region.at::<H>(0);
        Ok(Self {
            region,
            _marker: PhantomData,
        })
    }

    /// The header. On every operation's path: no checks (`new` made them).
    #[inline]
    pub(crate) fn header(&self) -> &H {
        // SAFETY: `new` checked (`Region::at`) that an `H` fits at offset 0 and is aligned;
        // the rest of `at`'s argument holds for the region's whole life.
        unsafe { &*self.region.base().cast::<H>() }
    }

    /// The whole region.
    #[inline]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }
}

/// Bytes of RAM plus swap on this machine (swap counted on Linux only); `None` if unknown.
pub(crate) fn machine_memory() -> Option<u64> {
    // SAFETY: `sysconf` has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ram = u64::try_from(pages)
        .ok()?
        .checked_mul(u64::try_from(page).ok()?)?;
    Some(ram.saturating_add(swap_bytes()))
}

#[cfg(target_os = "linux")]
fn swap_bytes() -> u64 {
    // SAFETY: an all-zero `sysinfo` is a valid value; the call only writes it.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    (info.totalswap as u64).saturating_mul(u64::from(info.mem_unit))
}

#[cfg(not(target_os = "linux"))]
fn swap_bytes() -> u64 {
    0
}

/// This process's address-space limit (`RLIMIT_AS`), `None` when unlimited or unknown.
pub(crate) fn address_space_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    // `rlim_t` is not `u64` on every platform.
    #[allow(clippy::unnecessary_cast)]
    Some(r.rlim_cur as u64)
}

/// Rounds `n` up to a multiple of `align` (a power of two).
pub(crate) const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// A cache-line-aligned wrapper, so fields written by different processes do not share a line.
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[repr(C)]
    struct Hdr {
        a: AtomicU64,
    }
    // SAFETY: repr(C), one atomic, valid when zero.
    unsafe impl ShmSafe for Hdr {}

    #[test]
    fn zeroed_and_usable() {
        let b = ShmBox::<Hdr>::new(4096, false).unwrap();
        assert_eq!(b.header().a.load(Ordering::Relaxed), 0);
        b.header().a.store(7, Ordering::Relaxed);
        assert_eq!(b.region().at::<Hdr>(0).a.load(Ordering::Relaxed), 7);
        assert_eq!(b.region().len(), 4096);
    }

    #[test]
    fn empty_region_is_an_error() {
        assert!(Region::new(0, false).is_err());
    }
}
