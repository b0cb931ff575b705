//! The window every backend's [`Pool::imap_with`](crate::Pool::imap_with) iterator keeps
//! (`imap` and `imap_unordered` call it): which chunks may be submitted, and in which
//! [`Order`] their results are handed back.
//!
//! An `imap` iterator cuts its input into chunks, submits them to the pool and yields their
//! results item by item. [`ReorderWindow`] holds the bookkeeping that is the same on every
//! backend, so the three pools agree on how much of the input is pulled ahead:
//!
//! - **Submit**: a chunk may be submitted while [`has_room`](ReorderWindow::has_room); each
//!   [`submit`](ReorderWindow::submit) hands out the chunk's sequence number.
//! - **Receive**: a finished chunk comes back with [`receive`](ReorderWindow::receive), in
//!   whatever order the workers finish.
//! - **Yield**: [`pop`](ReorderWindow::pop) hands out the items of received chunks: in
//!   submission order for [`Order::Input`] (a chunk that finished ahead of its turn waits), in
//!   arrival order for [`Order::Completion`].
//!
//! The window counts the chunks submitted and not yet released: in input order, a chunk that
//! finished ahead of a slow one still counts until its turn comes, so a slow chunk never lets
//! the rest of an endless input pile up behind it. The iterator is finished when nothing is
//! [`in_flight`](ReorderWindow::in_flight), its input is exhausted and `pop` returns `None`.
//!
//! ```
//! use uniconc_core::Order;
//! use uniconc_core::imap::ReorderWindow;
//!
//! let mut w = ReorderWindow::<Vec<u32>>::new(2, Order::Input);
//! let (a, b) = (w.submit(), w.submit());
//! assert!(!w.has_room());
//! w.receive(b, vec![3, 4]); // ahead of its turn: held back
//! assert_eq!(w.pop(), None);
//! assert!(!w.has_room()); // still counts until it is released
//! w.receive(a, vec![1, 2]);
//! let items: Vec<u32> = std::iter::from_fn(|| w.pop()).collect();
//! assert_eq!(items, [1, 2, 3, 4]);
//! assert_eq!(w.in_flight(), 0);
//! assert!(w.has_room());
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::pool::Order;

/// The chunk window and reorder buffer of an `imap_with` iterator, generic over a
/// chunk `C` of results (see the [module docs](self)).
pub struct ReorderWindow<C: IntoIterator> {
    /// Most chunks submitted and not yet released (input order) or received (completion
    /// order).
    window: u64,
    order: Order,
    /// Sequence number of the next chunk submitted; also the number submitted.
    next_submit: u64,
    /// Chunks received back.
    received: u64,
    /// Input order: the next chunk to release. Completion order: equal to `received`.
    next_yield: u64,
    /// Input order: chunks received ahead of their turn, by sequence number.
    pending: BTreeMap<u64, C>,
    /// Items released and not yet popped.
    ready: VecDeque<C::Item>,
}

impl<C: IntoIterator> std::fmt::Debug for ReorderWindow<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReorderWindow")
            .field("window", &self.window)
            .field("order", &self.order)
            .field("submitted", &self.next_submit)
            .field("received", &self.received)
            .field("released", &self.next_yield)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl<C: IntoIterator> ReorderWindow<C> {
    /// A window of at most `window` chunks (at least one), yielding in submission order
    /// ([`Order::Input`]) or in arrival order ([`Order::Completion`]).
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let w = ReorderWindow::<Vec<u8>>::new(0, Order::Completion);
    /// assert!(w.has_room()); // a window of 0 would never start: it holds one chunk
    /// ```
    pub fn new(window: usize, order: Order) -> Self {
        Self {
            window: (window as u64).max(1),
            order,
            next_submit: 0,
            received: 0,
            next_yield: 0,
            pending: BTreeMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// `true` if one more chunk may be submitted.
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let mut w = ReorderWindow::<Vec<u8>>::new(1, Order::Completion);
    /// let s = w.submit();
    /// assert!(!w.has_room());
    /// w.receive(s, vec![]);
    /// assert!(w.has_room()); // completion order: a received chunk frees its place at once
    /// ```
    pub fn has_room(&self) -> bool {
        let released = match self.order {
            Order::Input => self.next_yield,
            Order::Completion => self.received,
        };
        self.next_submit - released < self.window
    }

    /// Counts one more chunk as submitted and returns its sequence number (0, 1, 2, ...),
    /// which its result must come back with.
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let mut w = ReorderWindow::<Vec<u8>>::new(4, Order::Input);
    /// assert_eq!((w.submit(), w.submit()), (0, 1));
    /// ```
    pub fn submit(&mut self) -> u64 {
        let seq = self.next_submit;
        self.next_submit += 1;
        seq
    }

    /// Takes back the results of chunk `seq`. In input order, the chunk waits for the chunks
    /// before it; in completion order, its items are ready at once.
    ///
    /// # Panics
    /// If `seq` was never handed out by [`submit`](Self::submit) or was already received: every
    /// chunk reports exactly once.
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let mut w = ReorderWindow::<Vec<u8>>::new(4, Order::Completion);
    /// let (a, b) = (w.submit(), w.submit());
    /// w.receive(b, vec![2]);
    /// assert_eq!(w.pop(), Some(2)); // completion order: arrival order
    /// w.receive(a, vec![1]);
    /// assert_eq!(w.pop(), Some(1));
    /// ```
    pub fn receive(&mut self, seq: u64, chunk: C) {
        assert!(
            seq < self.next_submit && self.received < self.next_submit,
            "chunk {seq} was not in flight"
        );
        self.received += 1;
        if self.order == Order::Completion {
            self.next_yield += 1;
            self.ready.extend(chunk);
            return;
        }
        assert!(seq >= self.next_yield, "chunk {seq} received twice");
        if seq != self.next_yield {
            let was = self.pending.insert(seq, chunk);
            assert!(was.is_none(), "chunk {seq} received twice");
            return;
        }
        self.ready.extend(chunk);
        self.next_yield += 1;
        while let Some(c) = self.pending.remove(&self.next_yield) {
            self.ready.extend(c);
            self.next_yield += 1;
        }
    }

    /// The next item released, if any.
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let mut w = ReorderWindow::<Vec<u8>>::new(1, Order::Input);
    /// assert_eq!(w.pop(), None);
    /// ```
    pub fn pop(&mut self) -> Option<C::Item> {
        self.ready.pop_front()
    }

    /// Chunks submitted whose results have not been received: 0 means no result is coming.
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let mut w = ReorderWindow::<Vec<u8>>::new(2, Order::Input);
    /// let s = w.submit();
    /// assert_eq!(w.in_flight(), 1);
    /// w.receive(s, vec![7]);
    /// assert_eq!(w.in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> u64 {
        self.next_submit - self.received
    }

    /// Chunks submitted so far.
    ///
    /// ```
    /// use uniconc_core::Order;
    /// use uniconc_core::imap::ReorderWindow;
    /// let mut w = ReorderWindow::<Vec<u8>>::new(2, Order::Input);
    /// w.submit();
    /// assert_eq!(w.submitted(), 1);
    /// ```
    pub fn submitted(&self) -> u64 {
        self.next_submit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_order_releases_in_turn_and_counts_held_chunks() {
        let mut w = ReorderWindow::<Vec<u64>>::new(3, Order::Input);
        let s: Vec<u64> = (0..3).map(|_| w.submit()).collect();
        assert!(!w.has_room());
        w.receive(s[2], vec![20, 21]);
        w.receive(s[1], vec![10]);
        assert_eq!(w.pop(), None);
        assert!(!w.has_room());
        assert_eq!(w.in_flight(), 1);
        w.receive(s[0], vec![]);
        assert!(w.has_room());
        let got: Vec<u64> = std::iter::from_fn(|| w.pop()).collect();
        assert_eq!(got, [10, 20, 21]);
    }

    #[test]
    fn completion_order_frees_on_receipt() {
        let mut w = ReorderWindow::<Vec<u64>>::new(2, Order::Completion);
        let (a, b) = (w.submit(), w.submit());
        assert!(!w.has_room());
        w.receive(b, vec![2]);
        assert!(w.has_room());
        assert_eq!(w.pop(), Some(2));
        w.receive(a, vec![1]);
        assert_eq!(w.pop(), Some(1));
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    #[should_panic(expected = "received twice")]
    fn a_chunk_reports_once() {
        let mut w = ReorderWindow::<Vec<u64>>::new(2, Order::Input);
        let (_, b) = (w.submit(), w.submit());
        w.receive(b, vec![]);
        w.receive(b, vec![]);
    }

    #[test]
    #[should_panic(expected = "not in flight")]
    fn an_unknown_chunk_is_refused() {
        let mut w = ReorderWindow::<Vec<u64>>::new(2, Order::Input);
        w.receive(0, vec![]);
    }
}
