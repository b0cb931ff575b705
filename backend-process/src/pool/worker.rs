//! The worker's side of the pool: the loop a forked worker runs, and the monomorphised
//! trampolines that run a user's function on a job's items.
//!
//! # Wire format
//!
//! Parent → worker, one frame per job (see [`sys`](super::sys) for framing):
//! `[u8 KIND_RUN][u64 trampoline][u64 ctx][u64 count][u8 slot][items...]`, or
//! `[u8 KIND_EXIT]`. `items` are postcard encodings of the arguments, back to back; `slot`
//! names the result slot the worker may use (see [`slots`](super::slots)), or is
//! [`slots::NONE`](super::slots::NONE).
//!
//! Worker → parent, one frame per job: `[u8 INLINE][results body]`, or `[u8 IN_SLOT][u64
//! len]` when the results body (`len` bytes) was written at the start of the named slot.
//! The results body is
//! `[u64 results_len][u64 failures][results...][failure records...]`. `results` are the
//! postcard encodings of the items that returned, back to back, in item order, with nothing
//! between them: the common case (every item returned) costs the parent one `R` decode per
//! item and nothing else. Each failure record is a postcard `(u64 index, u8 tag, String
//! message)`, in index order: [`PANICKED`] or [`FAILED`] for that item alone, or
//! [`FAILED_REST`] for that item and every later one (an argument that could not be decoded
//! loses the item boundaries).
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

use super::slots::{self, Slots};
use super::sys::{self, Pid};
use super::wire;

/// The anchor of [`code_base`]: a static has one address in the whole program, whatever
/// crate or codegen unit asks for it. (A function would not do: a small one may be inlined
/// into other crates with a copy of its own, and its address then depends on who takes it.)
static ANCHOR: u8 = 0;

/// The address clean workers' trampoline words are relative to: [`ANCHOR`]'s. A
/// clean-started worker runs the same binary file (`/proc/self/exe`) loaded at another
/// address, but one loaded object is shifted as a whole: the distance from a function of it
/// to a static of it is the same in both processes.
pub(crate) fn code_base() -> usize {
    (&raw const ANCHOR) as usize
}

/// The trampoline word of a job frame for a clean-started worker: `tramp`'s offset from
/// [`code_base`]. `None` if `tramp` lies in another loaded object than this crate's code (a
/// program built with Rust dylibs), where no offset would hold in another process.
pub(crate) fn code_word(tramp: Trampoline) -> Option<u64> {
    let object = |addr: usize| {
        let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
        // SAFETY: dladdr only reads the loader's tables and writes `info`; the address is
        // that of a function of this process.
        let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
        // SAFETY: zero-initialised, and filled in by dladdr when it returns non-zero.
        (found != 0).then(|| unsafe { info.assume_init() }.dli_fbase as usize)
    };
    let (t, b) = (tramp as usize, code_base());
    let same = match (object(t), object(b)) {
        (Some(x), Some(y)) => x == y,
        // The loader knows neither address: a statically linked binary, one object.
        (None, None) => true,
        _ => false,
    };
    same.then(|| t.wrapping_sub(b) as u64)
}

/// Job frame kinds.
pub(crate) const KIND_RUN: u8 = 0;
pub(crate) const KIND_EXIT: u8 = 1;

/// Failure record tags.
pub(crate) const PANICKED: u8 = 1;
pub(crate) const FAILED: u8 = 2;
pub(crate) const FAILED_REST: u8 = 3;

/// Bytes before the results in a results body: `results_len` and `failures`.
pub(crate) const RESULT_HEADER: usize = 16;

/// Where a result frame's results body is: right after this byte, or in the job's slot.
pub(crate) const INLINE: u8 = 0;
pub(crate) const IN_SLOT: u8 = 1;

/// Bytes of a job frame body before its items.
pub(crate) const JOB_HEADER: usize = 26;

/// Runs a user's function over a job's encoded items, appends their results to `out` and
/// records failures in `fails`.
///
/// # Safety
/// Only called in a worker forked from the process that produced the frame, with the `ctx`
/// that was paired with this trampoline when the frame was built (see the module docs).
pub(crate) type Trampoline =
    unsafe fn(ctx: *const (), count: usize, items: &[u8], out: &mut Results<'_>);

/// Where a trampoline puts what it computed: results back to back in `out`, failure records
/// in `fails` (see the module docs for the frame they become).
pub(crate) struct Results<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) fails: &'a mut Vec<u8>,
    pub(crate) failures: u64,
}

impl Results<'_> {
    fn fail(&mut self, index: usize, tag: u8, msg: &str) {
        self.failures += 1;
        let _ = sys::encode_into(&(index as u64, tag, msg), self.fails);
    }
}

/// Trampoline of `map`/`imap`: calls `&F` on every item.
///
/// # Safety
/// `ctx` is a valid `*const F` in this process (module docs).
pub(crate) unsafe fn run_map<T, R, F>(
    ctx: *const (),
    count: usize,
    items: &[u8],
    res: &mut Results<'_>,
) where
    T: DeserializeOwned,
    R: Serialize,
    F: Fn(T) -> R,
{
    // SAFETY: the caller guarantees ctx points at a live F in this process.
    let f = unsafe { &*ctx.cast::<F>() };
    res.out.reserve(items.len() + items.len() / 2);
    let mut de = wire::Reader::new(items);
    for i in 0..count {
        let at = de;
        match de.read::<T>() {
            Ok(item) => run_one(i, || f(item), res),
            Err(e) => {
                // The item boundaries are lost: this item and every later one fail.
                let msg = wire::decode_failure::<T>("the argument", at.rest(), &e);
                res.fail(i, FAILED_REST, &msg);
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
    res: &mut Results<'_>,
) where
    T: DeserializeOwned,
    R: Serialize,
    F: FnOnce(T) -> R,
{
    match postcard::from_bytes::<T>(items) {
        Ok(item) => {
            // SAFETY: per the contract, ctx is a valid F that this call alone takes.
            let f = unsafe { std::ptr::read(ctx.cast::<F>()) };
            run_one(0, move || f(item), res);
        }
        Err(e) => res.fail(
            0,
            FAILED,
            &wire::decode_failure::<T>("the argument", items, &e),
        ),
    }
}

/// Calls item `index` under `catch_unwind` and appends its result (or records its failure).
#[inline(always)]
fn run_one<R: Serialize>(index: usize, call: impl FnOnce() -> R, res: &mut Results<'_>) {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(r) => {
            if let Err(e) = sys::Encoder::new(res.out).push(&r) {
                let ty = std::any::type_name::<R>();
                let msg = format!("the result could not be serialized (a `{ty}`): {e}");
                res.fail(index, FAILED, &msg);
            }
        }
        Err(payload) => {
            let msg = panic_message(&*payload);
            // A payload whose destructor panics would unwind out of the worker: forget it.
            std::mem::forget(payload);
            res.fail(index, PANICKED, &msg);
        }
    }
}

/// The worker loop: reads job frames from `fd`, runs them, writes one result frame per job.
/// Leaves (with `_exit`) on an exit frame, when the parent closes the socket, or when the
/// parent process is gone (checked every second while idle).
///
/// `base` is added to every trampoline word of a job frame: 0 in a forked worker (the words
/// are addresses), [`code_base`] in a clean-started one (the words are offsets from the
/// parent's `code_base`, see [`code_word`]).
pub(crate) fn main(
    fd: RawFd,
    parent: Pid,
    slot_mem: Option<&Slots>,
    base: usize,
) -> std::convert::Infallible {
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
    let mut fails = Vec::new();
    let spin = sys::spin_budget();
    loop {
        // The next job often follows at once (a `submit` + `wait` loop, the next chunk): look
        // for it for a moment before sleeping in `recv`.
        let mut p = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        let _ = sys::poll_spinning(&mut p, spin);
        match sys::recv_exact(fd, &mut header, idle) {
            Ok(true) => {}
            _ => sys::exit_child(0),
        }
        let len = u64::from_le_bytes(header);
        if len == 0 || len > sys::MAX_FRAME {
            sys::exit_child(3);
        }
        let len = len as usize;
        // Grown, never cleared: the bytes are overwritten by the read, no need to zero them
        // again for every job.
        if body.len() < len {
            body.resize(len, 0);
        }
        let job = &mut body[..len];
        if !matches!(sys::recv_exact(fd, job, idle), Ok(true)) {
            sys::exit_child(0);
        }
        match job[0] {
            KIND_RUN if job.len() >= JOB_HEADER => {
                let word = |at: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&job[at..at + 8]);
                    u64::from_le_bytes(w) as usize
                };
                let (tramp, ctx, count) = (base.wrapping_add(word(1)), word(9), word(17));
                let slot = job[25];
                // SAFETY: the frame was built by this pool's parent process from a
                // `Trampoline` value; this worker was forked from it without exec, so the
                // address names the same function here, or (a clean worker) it runs the same
                // binary file, whose code is at the same offsets from `code_base` (module
                // docs, `code_word`).
                let tramp: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(tramp) };
                // `[frame header][INLINE][results body]`, the body's header filled below.
                sys::begin_frame(&mut out);
                out.push(INLINE);
                out.extend_from_slice(&[0u8; RESULT_HEADER]);
                fails.clear();
                let mut res = Results {
                    out: &mut out,
                    fails: &mut fails,
                    failures: 0,
                };
                // SAFETY: ctx was paired with this trampoline by the parent, and this worker
                // was forked while the closure it points at was alive (module docs).
                unsafe { tramp(ctx as *const (), count, &job[JOB_HEADER..], &mut res) };
                let failures = res.failures;
                let results_len = (out.len() - 9 - RESULT_HEADER) as u64;
                out[9..17].copy_from_slice(&results_len.to_le_bytes());
                out[17..25].copy_from_slice(&failures.to_le_bytes());
                out.extend_from_slice(&fails);
                let body = &out[9..];
                let in_slot = (slots::MIN_SHARED..=slots::SLOT)
                    .contains(&body.len())
                    .then(|| slot_mem.and_then(|s| s.slot_ptr(slot)))
                    .flatten();
                // Flush before reporting: once the parent has the result it may kill this
                // worker at any moment (pool dropped, retired), and the job's output must be
                // out by then.
                use std::io::Write as _;
                let _ = io::stdout().flush();
                let _ = io::stderr().flush();
                let sent = match in_slot {
                    Some(dst) => {
                        // SAFETY: `dst` is the start of the slot the parent named for this
                        // job, `SLOT` bytes of the shared mapping, which no one else writes
                        // while this job runs (`slots` module docs); `body.len() <= SLOT`
                        // (checked above), and `body` is private memory, so they do not
                        // overlap.
                        unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), dst, body.len()) };
                        let mut note = [0u8; 17];
                        note[..8].copy_from_slice(&9u64.to_le_bytes());
                        note[8] = IN_SLOT;
                        note[9..].copy_from_slice(&(body.len() as u64).to_le_bytes());
                        sys::send_all(fd, &note)
                    }
                    None => {
                        sys::finish_frame(&mut out);
                        sys::send_all(fd, &out)
                    }
                };
                if sent.is_err() {
                    sys::exit_child(0);
                }
            }
            KIND_EXIT => sys::exit_child(0),
            _ => sys::exit_child(3),
        }
        // Keep the buffers warm between jobs, but do not sit on a huge one.
        if out.capacity() > KEEP_BUFFER {
            out = Vec::with_capacity(4096);
        }
        if body.capacity() > KEEP_BUFFER {
            body = Vec::new();
        }
        if fails.capacity() > KEEP_BUFFER {
            fails = Vec::new();
        }
    }
}

/// Largest buffer a worker keeps between jobs.
const KEEP_BUFFER: usize = 8 << 20;
