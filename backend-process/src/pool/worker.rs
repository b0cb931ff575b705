//! The worker's side of the pool: the loop a forked worker runs, and the monomorphised
//! trampolines that run a user's function on a job's items.
//!
//! # Wire format
//!
//! Parent → worker, one frame per job (see [`sys`](super::sys) for framing):
//! `[u8 KIND_RUN][u64 trampoline][u64 ctx][u64 count][items...]`, or `[u8 KIND_EXIT]`.
//! `items` are postcard encodings of the arguments, back to back.
//!
//! Worker → parent, one frame per job: for each item, a tag byte and a postcard body:
//! [`OK`] then the result, [`PANICKED`] or [`FAILED`] then a message `String`.
//!
//! # Why passing a function pointer is sound
//!
//! A worker is forked from the process that builds the frames and never `exec`s, so its code
//! is mapped at the same addresses: the trampoline address in a frame is the address of the
//! same monomorphised function in the worker. `ctx` points at the user's closure: for a
//! zero-sized closure any aligned non-null address is a valid one (there is no byte to read);
//! for a capturing closure it is the closure's address inside an allocation the parent keeps
//! alive while it forks the workers that may receive such frames, so the worker's copy of the
//! parent's memory holds the closure there.

use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uniconc_core::panic_message;

use super::sys::{self, Pid};

/// Job frame kinds.
pub(crate) const KIND_RUN: u8 = 0;
pub(crate) const KIND_EXIT: u8 = 1;

/// Result tags.
pub(crate) const OK: u8 = 0;
pub(crate) const PANICKED: u8 = 1;
pub(crate) const FAILED: u8 = 2;

/// Runs a user's function over a job's encoded items and appends tagged results to `out`.
///
/// # Safety
/// Only called in a worker forked from the process that produced the frame, with the `ctx`
/// that was paired with this trampoline when the frame was built (see the module docs).
pub(crate) type Trampoline =
    unsafe fn(ctx: *const (), count: usize, items: &[u8], out: &mut Vec<u8>);

/// Trampoline of `map`/`imap`: calls `&F` on every item.
///
/// # Safety
/// `ctx` is a valid `*const F` in this process (module docs).
pub(crate) unsafe fn run_map<T, R, F>(ctx: *const (), count: usize, items: &[u8], out: &mut Vec<u8>)
where
    T: DeserializeOwned,
    R: Serialize,
    F: Fn(T) -> R,
{
    // SAFETY: the caller guarantees ctx points at a live F in this process.
    let f = unsafe { &*ctx.cast::<F>() };
    out.reserve(items.len() + items.len() / 2);
    let mut enc = sys::Encoder::new(out);
    let mut de = postcard::Deserializer::from_bytes(items);
    for _ in 0..count {
        match T::deserialize(&mut de) {
            Ok(item) => run_one(|| f(item), &mut enc),
            Err(e) => {
                // The item boundaries are lost: the parent reports the missing items.
                push_message(
                    enc.buf(),
                    FAILED,
                    &format!("the argument could not be decoded: {e}"),
                );
                return;
            }
        }
    }
}

/// Trampoline of `submit`: moves `F` out of `ctx` and calls it once.
///
/// # Safety
/// `ctx` is a valid `*const F` in this process that nothing else in this process reads or
/// drops (a zero-sized `F`, or the worker's private copy of the parent's closure, used by one
/// job only).
pub(crate) unsafe fn run_once<T, R, F>(
    ctx: *const (),
    _count: usize,
    items: &[u8],
    out: &mut Vec<u8>,
) where
    T: DeserializeOwned,
    R: Serialize,
    F: FnOnce(T) -> R,
{
    match postcard::from_bytes::<T>(items) {
        Ok(item) => {
            // SAFETY: per the contract, ctx is a valid F that this call alone takes.
            let f = unsafe { std::ptr::read(ctx.cast::<F>()) };
            run_one(move || f(item), &mut sys::Encoder::new(out));
        }
        Err(e) => push_message(
            out,
            FAILED,
            &format!("the argument could not be decoded: {e}"),
        ),
    }
}

/// Calls one item under `catch_unwind` and appends its tagged result.
fn run_one<R: Serialize>(call: impl FnOnce() -> R, enc: &mut sys::Encoder<'_>) {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(r) => {
            enc.buf().push(OK);
            if let Err(e) = enc.push(&r) {
                enc.buf().pop();
                let msg = format!("the result could not be serialized: {e}");
                push_message(enc.buf(), FAILED, &msg);
            }
        }
        Err(payload) => {
            let msg = panic_message(&*payload);
            // A payload whose destructor panics would unwind out of the worker: forget it.
            std::mem::forget(payload);
            push_message(enc.buf(), PANICKED, &msg);
        }
    }
}

fn push_message(out: &mut Vec<u8>, tag: u8, msg: &str) {
    out.push(tag);
    let _ = sys::encode_into(&msg, out);
}

/// The worker loop: reads job frames from `fd`, runs them, writes one result frame per job.
/// Leaves (with `_exit`) on an exit frame, when the parent closes the socket, or when the
/// parent process is gone (checked every second while idle).
pub(crate) fn main(fd: RawFd, parent: Pid) -> std::convert::Infallible {
    let _ = sys::set_recv_timeout(fd, 1);
    let idle = || {
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            Err(io::Error::other("the pool's process is gone"))
        } else {
            Ok(())
        }
    };
    let mut header = [0u8; 8];
    let mut body = Vec::new();
    let mut out = Vec::with_capacity(4096);
    loop {
        match sys::recv_exact(fd, &mut header, idle) {
            Ok(true) => {}
            _ => sys::exit_child(0),
        }
        let len = u64::from_le_bytes(header);
        if len == 0 || len > sys::MAX_FRAME {
            sys::exit_child(3);
        }
        body.clear();
        body.resize(len as usize, 0);
        if !matches!(sys::recv_exact(fd, &mut body, idle), Ok(true)) {
            sys::exit_child(0);
        }
        match body[0] {
            KIND_RUN if body.len() >= 25 => {
                let word = |at: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&body[at..at + 8]);
                    u64::from_le_bytes(w) as usize
                };
                let (tramp, ctx, count) = (word(1), word(9), word(17));
                // SAFETY: the frame was built by this pool's parent process from a
                // `Trampoline` value; this worker was forked from it without exec, so the
                // address names the same function here (module docs).
                let tramp: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
                sys::begin_frame(&mut out);
                // SAFETY: ctx was paired with this trampoline by the parent, and this worker
                // was forked while the closure it points at was alive (module docs).
                unsafe { tramp(ctx as *const (), count, &body[25..], &mut out) };
                sys::finish_frame(&mut out);
                // Flush before reporting: once the parent has the result it may kill this
                // worker at any moment (pool dropped, retired), and the job's output must be
                // out by then.
                use std::io::Write as _;
                let _ = io::stdout().flush();
                let _ = io::stderr().flush();
                if sys::send_all(fd, &out).is_err() {
                    sys::exit_child(0);
                }
                if out.capacity() > 1 << 20 {
                    out = Vec::with_capacity(4096);
                }
                if body.capacity() > 1 << 20 {
                    body = Vec::new();
                }
            }
            KIND_EXIT => sys::exit_child(0),
            _ => sys::exit_child(3),
        }
    }
}
