//! The atomic steps of the channel's wake handshake (the channel's module docs, "Waking"),
//! apart so that the loom model below checks the very code the channel runs.
//!
//! A futex word holds a sleeper flag ([`SLEEPERS`], bit 0) and a sequence number (the other
//! bits). A waiter raises the flag with [`register_sleeper`], re-checks its condition with
//! SeqCst loads, and sleeps on the value it got. A peer that changed the condition with a
//! SeqCst read-modify-write calls [`take_sleepers`]: if the flag is up it bumps the word
//! (clearing the flag) and must then wake the word's sleepers.
//!
//! # Memory ordering
//!
//! Store buffering: each side writes one location with a SeqCst read-modify-write (the flag;
//! the ring's `tail` or `recvd`) and then reads the other's with a SeqCst load. In the single
//! total order of SeqCst operations one of the two writes comes first, so at least one side
//! sees the other's write: the waiter sees the change and does not sleep, or the notifier
//! sees the flag and wakes it. Weakening any one of the four to Release/Acquire allows both
//! sides to miss each other.

use crate::sync::{AtomicU32, Ordering, seq_cst_point};

/// The sleeper flag of a wait word.
pub(crate) const SLEEPERS: u32 = 1;

/// The waiter's store: raises the sleeper flag on `word` and returns the value to sleep on.
/// The caller then re-checks its condition with SeqCst loads before it sleeps.
#[inline]
pub(crate) fn register_sleeper(word: &AtomicU32) -> u32 {
    const ORDER: Ordering = Ordering::SeqCst;
    // SeqCst: the store half of the store-buffering handshake (module docs); it also
    // acquires, so a sleeper that sees a bump sees the condition change made before it.
    let v = word.fetch_or(SLEEPERS, ORDER) | SLEEPERS;
    seq_cst_point(ORDER);
    v
}

/// The notifier's load: after the caller's SeqCst change of the condition, `true` if a
/// sleeper had registered on `word`; the word has then been bumped (flag cleared, sequence
/// moved on) and the caller must wake its sleepers.
///
/// The flag is a flag, not a count: the notifier clears it and wakes everyone, so while a
/// woken sleeper is on its way back to the CPU, further changes make no syscall.
#[inline]
pub(crate) fn take_sleepers(word: &AtomicU32) -> bool {
    const ORDER: Ordering = Ordering::SeqCst;
    seq_cst_point(ORDER);
    // SeqCst: the load half of the notifier's side of the handshake (module docs).
    let v = word.load(ORDER);
    // Release: the sleeper that sees the new value sees the condition change. A failed CAS
    // means another notifier bumped the word (and wakes), or a sleeper re-registered after
    // our change (its re-check sees it).
    v & SLEEPERS != 0
        && word
            .compare_exchange(v, v.wrapping_add(1), Ordering::Release, Ordering::Relaxed)
            .is_ok()
}

/// Loom models of the handshake, in-process: one loom atomic stands for the ring's `tail`
/// (written by the sender's SeqCst CAS, read by the waiter's SeqCst re-check, as the ring
/// does); the flag steps are the functions above. A futex wait on `seq` returns at once
/// once the word moved on, and a sleeper already asleep is woken by the bump's wake, so
/// "no lost wake-up" is: a waiter whose re-check saw nothing finds the word moved on.
///
/// Run: `RUSTFLAGS="--cfg uniconc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p uniconc-process
/// --release --lib --target-dir target/loom -- wake::`.
#[cfg(all(test, uniconc_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU64;

    /// Stand-in for the ring's `try_push` claim: its SeqCst `tail` CAS.
    fn claim_cells(tail: &AtomicU64) {
        let t = tail.load(Ordering::Relaxed);
        tail.compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
            .expect("one sender");
    }

    /// Stand-in for the receiver's re-check (`Ring::is_idle`): a SeqCst load of `tail`.
    fn sees_message(tail: &AtomicU64) -> bool {
        tail.load(Ordering::SeqCst) > 0
    }

    /// A receiver going to sleep (raise the flag, re-check `tail`) against a sender (CAS
    /// `tail`, check the flag, wake): no lost wake-up.
    ///
    /// Mutations this model catches (each made, seen failing, reverted): the flag's
    /// `fetch_or` in [`register_sleeper`] weakened to `AcqRel`; the flag's load in
    /// [`take_sleepers`] weakened to `Acquire`. Loom checks SeqCst accesses as AcqRel ones
    /// and models the SeqCst total order only for fences, so `seq_cst_point` stands in for
    /// the order of the SeqCst accesses under loom (a fence while the ordering is SeqCst) and
    /// the mutation takes it away with the ordering. The stand-ins' orderings (the ring's
    /// `tail` CAS and `is_idle` loads) are not what this model checks.
    #[test]
    fn loom_receiver_sleep_against_send() {
        loom::model(|| {
            let word = Arc::new(AtomicU32::new(0));
            let tail = Arc::new(AtomicU64::new(0));
            let sender = {
                let (word, tail) = (word.clone(), tail.clone());
                loom::thread::spawn(move || {
                    claim_cells(&tail);
                    take_sleepers(&word)
                })
            };
            let seq = register_sleeper(&word);
            let seen = sees_message(&tail);
            let woke = sender.join().unwrap();
            if !seen {
                assert!(woke, "the sender did not see the sleeper flag");
                assert_ne!(word.load(Ordering::Relaxed), seq, "lost wake-up");
            }
        });
    }

    /// Two senders, one sleeper: whichever sender sees the flag bumps the word once (the
    /// other's CAS fails or sees no flag), and the sleeper is not left asleep.
    #[test]
    fn loom_two_senders_one_sleeper() {
        loom::model(|| {
            let word = Arc::new(AtomicU32::new(0));
            let tail = Arc::new(AtomicU64::new(0));
            let senders: Vec<_> = (0..2)
                .map(|_| {
                    let (word, tail) = (word.clone(), tail.clone());
                    loom::thread::spawn(move || {
                        tail.fetch_add(1, Ordering::SeqCst);
                        take_sleepers(&word)
                    })
                })
                .collect();
            let seq = register_sleeper(&word);
            let seen = sees_message(&tail);
            let wakes = senders
                .into_iter()
                .map(|s| s.join().unwrap())
                .filter(|&w| w)
                .count();
            assert!(wakes <= 1, "the flag is taken once");
            if !seen {
                assert_ne!(word.load(Ordering::Relaxed), seq, "lost wake-up");
            }
        });
    }

    /// A select (`ProcSelector`): one waiter registers on two words (each guarding its own
    /// channel's `tail`), re-checks both channels, then sleeps on both words at once
    /// (`futex_waitv` returns as soon as either word holds another value than the one it
    /// registered with); a sender on each channel. No lost wake-up: for each channel whose
    /// message the re-check missed, that channel's word moved on, so the sleep on both
    /// returns (or the kernel wakes it).
    ///
    /// Mutation checked: registering on the second word *after* re-checking the second
    /// channel (the order a careless select loop could take) fails this model.
    #[test]
    fn loom_select_two_words_two_senders() {
        loom::model(|| {
            let words = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
            let tails = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            let senders: Vec<_> = (0..2)
                .map(|i| {
                    let (words, tails) = (words.clone(), tails.clone());
                    loom::thread::spawn(move || {
                        claim_cells(&tails[i]);
                        take_sleepers(&words[i])
                    })
                })
                .collect();
            let seqs = [register_sleeper(&words[0]), register_sleeper(&words[1])];
            let seen = [sees_message(&tails[0]), sees_message(&tails[1])];
            for s in senders {
                s.join().unwrap();
            }
            for i in 0..2 {
                if !seen[i] {
                    assert_ne!(
                        words[i].load(Ordering::Relaxed),
                        seqs[i],
                        "lost wake-up on word {i}"
                    );
                }
            }
        });
    }
}
