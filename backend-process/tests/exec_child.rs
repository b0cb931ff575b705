//! A program started by `fork` + `exec` while this process holds channel handles (a
//! `std::process::Command` with `pre_exec`, which forks, or a forked child that execs) holds
//! none of them once it runs: the fork counted the child as a holder, and its `exec` ends
//! that (on Linux, where it is noticed through OFD locks; elsewhere the program holds them
//! until it exits). A forked child that does not exec keeps counting, whether it uses its
//! handles or not.

mod common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{serial, spawn};
use uniconc::Backend as _;
use uniconc_core::{Event as _, Receiver as _, RecvTimeoutError, Sender as _};
use uniconc_process::{channel, event};

/// Longer than anything here takes on a loaded machine: a watchdog, never a measurement.
const LIMIT: Duration = Duration::from_secs(30);

/// Long enough for a blocked receiver to look for gone peers several times (it does every
/// 100 ms): a wait that ends in `Timeout` shows they were looked for and still count.
const SEVERAL_REAPS: Duration = Duration::from_millis(500);

/// `sleep 30`, killed and reaped on drop.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleep_command() -> std::process::Command {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    cmd
}

#[test]
#[cfg_attr(
    any(not(target_os = "linux"), uniconc_fallback),
    ignore = "an exec is noticed through OFD locks (Linux)"
)]
fn a_forked_and_executed_program_does_not_hold_the_channel_open() {
    let _s = serial("a_forked_and_executed_program_does_not_hold_the_channel_open");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let mut cmd = sleep_command();
    // SAFETY: the closure makes no call at all (it only makes `Command` fork: the fork
    // handlers run and count the child).
    unsafe { cmd.pre_exec(|| Ok(())) };
    let _prog = Sleeper(cmd.spawn().expect("sleep starts"));
    drop(tx);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn a_program_spawned_without_pre_exec_never_held_the_channel() {
    // `Command::spawn` without `pre_exec` starts the program with `posix_spawn` (a vfork-like
    // clone that runs no fork handlers): the child was never counted.
    let _s = serial("a_program_spawned_without_pre_exec_never_held_the_channel");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let _prog = Sleeper(sleep_command().spawn().expect("sleep starts"));
    drop(tx);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
#[cfg_attr(
    any(not(target_os = "linux"), uniconc_fallback),
    ignore = "an exec is noticed through OFD locks (Linux)"
)]
fn a_forked_child_that_used_its_sender_then_execs_stops_holding_it() {
    let _s = serial("a_forked_child_that_used_its_sender_then_execs_stops_holding_it");
    let (tx, rx) = channel::<u32>(4).unwrap();
    // The parent's copy of `tx` goes with the closure: only the child's counts.
    let child = spawn(move || {
        tx.send(1).unwrap();
        // Replaces this process (same pid) with `sleep`, `tx` never dropped.
        let e = sleep_command().exec();
        panic!("exec failed: {e}");
    });
    assert_eq!(rx.recv_timeout(LIMIT), Ok(1));
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
    child.kill();
}

#[test]
fn a_forked_child_that_does_not_exec_keeps_its_used_handles_counted() {
    let _s = serial("a_forked_child_that_does_not_exec_keeps_its_used_handles_counted");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let go = event().unwrap();
    let child = spawn({
        let go = go.clone();
        move || {
            tx.send(1).unwrap();
            go.wait();
            tx.send(2).unwrap();
            0
        }
    });
    assert_eq!(rx.recv_timeout(LIMIT), Ok(1));
    // The only sender lives, idle, in the child.
    assert_eq!(
        rx.recv_timeout(SEVERAL_REAPS),
        Err(RecvTimeoutError::Timeout)
    );
    go.set();
    assert_eq!(rx.recv_timeout(LIMIT), Ok(2));
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

/// A child that closes every descriptor past stdio (the channel's file among them, as a
/// daemon does) and runs on: its holder lock went with the descriptor, but it still maps the
/// channel, so it still counts (it did not exec).
#[test]
#[cfg_attr(
    any(not(target_os = "linux"), uniconc_fallback),
    ignore = "holder locks are Linux's"
)]
fn a_forked_child_that_closes_its_descriptors_keeps_its_handles_counted() {
    let _s = serial("a_forked_child_that_closes_its_descriptors_keeps_its_handles_counted");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let go = event().unwrap();
    let child = spawn({
        let go = go.clone();
        move || {
            tx.send(1).unwrap();
            for fd in 3..4096 {
                // SAFETY: closing descriptors this child does not use again (the channel and
                // the event live in its mappings, which stay).
                unsafe { libc::close(fd) };
            }
            tx.send(2).unwrap();
            go.wait();
            tx.send(3).unwrap();
            0
        }
    });
    assert_eq!(rx.recv_timeout(LIMIT), Ok(1));
    assert_eq!(rx.recv_timeout(LIMIT), Ok(2));
    assert_eq!(
        rx.recv_timeout(SEVERAL_REAPS),
        Err(RecvTimeoutError::Timeout)
    );
    go.set();
    assert_eq!(rx.recv_timeout(LIMIT), Ok(3));
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn a_forked_child_that_does_not_exec_keeps_its_unused_handles_counted() {
    let _s = serial("a_forked_child_that_does_not_exec_keeps_its_unused_handles_counted");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let go = event().unwrap();
    let child = spawn({
        let go = go.clone();
        move || {
            // Inherited and not used until `go`: counted for the child from the fork on.
            go.wait();
            tx.send(7).unwrap();
            0
        }
    });
    assert_eq!(
        rx.recv_timeout(SEVERAL_REAPS),
        Err(RecvTimeoutError::Timeout)
    );
    go.set();
    assert_eq!(rx.recv_timeout(LIMIT), Ok(7));
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
fn a_grandchild_that_does_not_exec_keeps_counting_after_its_parent_exits() {
    let _s = serial("a_grandchild_that_does_not_exec_keeps_counting_after_its_parent_exits");
    let (tx, rx) = channel::<u32>(4).unwrap();
    let go = event().unwrap();
    let child = spawn({
        let go = go.clone();
        move || {
            tx.send(1).unwrap();
            // The grandchild is not waited for: it outlives this child (and so ends by itself
            // if the test fails before `go`).
            std::mem::forget(spawn(move || {
                if go.wait_timeout(LIMIT).is_err() {
                    return 3;
                }
                tx.send(2).unwrap();
                0
            }));
            0
        }
    });
    assert_eq!(child.join(LIMIT), 0);
    assert_eq!(rx.recv_timeout(LIMIT), Ok(1));
    assert_eq!(
        rx.recv_timeout(SEVERAL_REAPS),
        Err(RecvTimeoutError::Timeout)
    );
    go.set();
    assert_eq!(rx.recv_timeout(LIMIT), Ok(2));
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
}

#[test]
#[cfg_attr(
    any(not(target_os = "linux"), uniconc_fallback),
    ignore = "an exec is noticed through OFD locks (Linux)"
)]
fn a_forked_and_executed_program_does_not_hold_a_named_channel_open() {
    let _s = serial("a_forked_and_executed_program_does_not_hold_a_named_channel_open");
    let name = format!("exec-child-{}", std::process::id());
    let b = || uniconc::Process::named(&name);
    let rx = b().receiver::<u32>(Some(4)).unwrap();
    let tx = b().existing().sender::<u32>(Some(4)).unwrap();
    let mut cmd = sleep_command();
    // SAFETY: as in `a_forked_and_executed_program_does_not_hold_the_channel_open`.
    unsafe { cmd.pre_exec(|| Ok(())) };
    let _prog = Sleeper(cmd.spawn().expect("sleep starts"));
    drop(tx);
    let got = rx.recv_timeout(LIMIT);
    let _ = b().unlink();
    assert_eq!(got, Err(RecvTimeoutError::Disconnected));
}
