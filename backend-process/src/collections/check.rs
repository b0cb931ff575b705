//! The consistency check behind `Map::check` and `List::check`: a walk of the whole
//! reservation that verifies every invariant of the committed state.

use std::sync::atomic::Ordering;

use uniconc_core::Error;

use super::heap::{class_of, class_size};
use super::{HEAP_START, NCLASS, Store, corrupt, word};

/// Which root layout a store holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A bucket table of 24-byte buckets (`map.rs`).
    Map,
    /// An index of 16-byte entries (`list.rs`).
    List,
}

/// Checks, under the lock (after any rollback): the journal is empty; the live blocks (root
/// and entries) and the free blocks tile `HEAP_START .. top` exactly (nothing leaked, nothing
/// in two places); `used` is the live total; `len` the number of live entries (and `tombs`
/// the map's tombstones). Returns `len`.
pub(super) fn check(s: &Store, kind: Kind) -> Result<usize, Error> {
    let mut t = s.lock();
    if let Kind::List = kind {
        super::list::finish_pending(&mut t)?;
    }
    if t.get(word::PENDING) != 0 {
        return Err(corrupt("a remove still pending"));
    }
    let t = t;
    let bad = |what: &str| Err(corrupt(what));
    let w = |off: usize| t.get(off);
    // Relaxed: under the lock.
    if s.hdr().journal_len.load(Ordering::Relaxed) != 0 {
        return bad("the journal was not rolled back");
    }
    let top = w(word::TOP) as usize;
    if top < HEAP_START || top > s.end() || top % 16 != 0 {
        return bad("the heap's top");
    }
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    let (root, cap, len) = (
        w(word::INDEX_OFF),
        w(word::INDEX_CAP) as usize,
        w(word::LEN) as usize,
    );
    let mut live = 0;
    let block = |off: u64, bytes: usize, blocks: &mut Vec<_>| -> Result<usize, Error> {
        let class = class_of(bytes).ok_or_else(|| corrupt("a block's size"))?;
        let b = t.block(off, class)?;
        if b + class_size(class) > top {
            return Err(corrupt("a block above the heap's top"));
        }
        blocks.push((b, class_size(class)));
        Ok(b)
    };
    if root != 0 {
        match kind {
            Kind::List => {
                let root = block(root, 8 + 16 * cap, &mut blocks)?;
                if len > cap {
                    return bad("a list longer than its index");
                }
                for i in 0..len {
                    let e = root + 8 + 16 * i;
                    let n = w(e + 8);
                    if n & super::list::INLINE == 0 {
                        block(w(e), (n as usize).saturating_add(8), &mut blocks)?;
                    } else if n & !super::list::INLINE > 8 {
                        return bad("an inline element's length");
                    }
                    live += 1;
                }
            }
            Kind::Map => {
                let root = block(root, 8 + 24 * cap, &mut blocks)?;
                let mut tombs = 0;
                for i in 0..cap {
                    let b = root + 8 + 24 * i;
                    match w(b + 8) {
                        0 => {}
                        1 => tombs += 1,
                        off => {
                            let lens = w(b + 16);
                            let n = (lens >> 32) + (lens & 0xffff_ffff);
                            block(off, 8 + n as usize, &mut blocks)?;
                            live += 1;
                        }
                    }
                }
                if tombs != w(word::TOMBS) as usize {
                    return bad("the tombstone count");
                }
            }
        }
    }
    if live != len {
        return bad("the length is not the number of entries");
    }
    let used: usize = blocks.iter().map(|b| b.1).sum();
    if used as u64 != w(word::USED) {
        return bad("the used byte count");
    }
    for k in 0..NCLASS {
        let mut b = w(word::head(k));
        while b != 0 {
            if blocks.len() > s.end() / 16 {
                return bad("a free list cycle");
            }
            let off = block(b, class_size(k), &mut blocks)?;
            b = w(off);
        }
    }
    blocks.sort_unstable();
    let mut at = HEAP_START;
    for (off, size) in blocks {
        if off != at {
            return bad(if off < at {
                "two blocks overlap"
            } else {
                "space that is neither allocated nor free"
            });
        }
        at += size;
    }
    if at != top {
        return bad("space below the top that is neither allocated nor free");
    }
    Ok(len)
}
