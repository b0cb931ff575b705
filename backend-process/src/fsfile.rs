//! What named objects (`named.rs`) and file-backed arrays (`file.rs`) share: a file made under a
//! temporary name and linked into place only once it is complete, so no opener ever sees a
//! half-made file; descriptors closed on drop; shared mappings of a file.

use std::ffi::CString;
use std::fmt::Display;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use uniconc_core::Error;

/// Bytes of an element or object type name kept in a file header (longer names are cut).
pub(crate) const TYPE_NAME_BYTES: usize = 192;

/// The part of a type name a header keeps.
pub(crate) fn type_name_bytes(t: &str) -> &[u8] {
    &t.as_bytes()[..t.len().min(TYPE_NAME_BYTES)]
}

pub(crate) fn cpath(p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid_argument("a path holds a NUL byte"))
}

/// An open file descriptor, closed on drop.
pub(crate) struct Fd(pub(crate) libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: a descriptor this struct owns, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Maps the first `len` bytes of the open file `fd`, shared and read-write. `what` names the
/// file in the error.
pub(crate) fn map_shared(
    fd: libc::c_int,
    len: usize,
    what: &dyn Display,
) -> Result<NonNull<u8>, Error> {
    // SAFETY: a fresh shared mapping of an open file at an address of the kernel's choice.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::last_os_error(format!(
            "mapping {what} ({len} bytes)"
        )));
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::invalid_argument("mmap returned null"))
}

/// A file being made under a temporary name: removed on drop unless [`publish`]ed.
///
/// [`publish`]: NewFile::publish
pub(crate) struct NewFile {
    fd: Fd,
    tmp: Option<CString>,
}

impl NewFile {
    /// Creates the file `tmp` (which must not exist; never through a symbolic link) with
    /// permissions `mode`, `len` zero bytes long.
    pub(crate) fn create(
        tmp: &Path,
        mode: libc::mode_t,
        len: usize,
        what: &dyn Display,
    ) -> Result<Self, Error> {
        let c = cpath(tmp)?;
        let off = libc::off_t::try_from(len)
            .map_err(|_| Error::invalid_argument(format!("{what}: {len} bytes is too large")))?;
        // SAFETY: a valid NUL-terminated path; flags and mode are valid for open.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        };
        if fd < 0 {
            return Err(Error::last_os_error(format!(
                "creating {what} ({})",
                tmp.display()
            )));
        }
        let file = NewFile {
            fd: Fd(fd),
            tmp: Some(c),
        };
        // SAFETY: a valid descriptor of a regular file.
        if unsafe { libc::ftruncate(file.fd.0, off) } != 0 {
            return Err(Error::last_os_error(format!("sizing {what} ({len} bytes)")));
        }
        Ok(file)
    }

    /// Maps the first `len` bytes (see [`map_shared`]).
    pub(crate) fn map(&self, len: usize, what: &dyn Display) -> Result<NonNull<u8>, Error> {
        map_shared(self.fd.0, len, what)
    }

    /// Another descriptor of the file (close-on-exec), sharing its open file description,
    /// which stays open once this `NewFile` is gone.
    pub(crate) fn duplicate(&self, what: &dyn Display) -> Result<Fd, Error> {
        // SAFETY: `fd` is open; F_DUPFD_CLOEXEC takes the lowest free number from 0.
        let fd = unsafe { libc::fcntl(self.fd.0, libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::last_os_error(format!("keeping {what} open")));
        }
        Ok(Fd(fd))
    }

    /// Gives the file its name `path` with `link(2)`, which fails if `path` exists: then the
    /// error is `exists()`, and the file goes with its temporary name. Either way the
    /// temporary name is removed.
    pub(crate) fn publish(
        self,
        path: &Path,
        exists: impl FnOnce() -> Error,
        what: &dyn Display,
    ) -> Result<(), Error> {
        let final_path = cpath(path)?;
        let tmp = self.tmp.as_ref().expect("set until drop");
        // SAFETY: two valid NUL-terminated paths. `link` fails with EEXIST if the path exists:
        // an existing file is never overwritten, and of racing creators exactly one wins.
        if unsafe { libc::link(tmp.as_ptr(), final_path.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                exists()
            } else {
                Error::os(format!("naming {what}"), e)
            });
        }
        Ok(()) // drop removes the temporary name; the file keeps its real one
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::unlink(tmp.as_ptr()) };
        }
    }
}
