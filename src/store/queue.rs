//! One FIFO queue: its ready elements and the consumers waiting on it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tokio::sync::oneshot;

use super::clock::Millis;
use super::element::Element;
use super::ids::Receipt;
use super::stats::{Counts, Totals};

/// Sequence numbers start in the middle of the range so that elements can be
/// put back at the head (below the first) as easily as pushed at the tail.
const FIRST_SEQ: u64 = 1 << 63;

/// Which end of the queue an element goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    /// A new push.
    Back,
    /// An element handed back (its consumer vanished, or a lease ended).
    Front,
}

/// An element handed out under a lease: invisible to other consumers until
/// it is acknowledged, released, or the lease runs out.
#[derive(Debug)]
pub(crate) struct Lease {
    pub element: Element,
    pub deadline: Millis,
}

/// A consumer blocked in a pop, waiting to be handed an element.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub id: u64,
    pub tx: oneshot::Sender<Element>,
}

#[derive(Debug)]
pub(crate) struct Queue {
    /// Ready elements by sequence number. A map rather than a `VecDeque` so the
    /// sweeper removes an expired element from the middle in O(log n).
    ready: BTreeMap<u64, Element>,
    /// Next sequence number at the back.
    next_back: u64,
    /// Waiting consumers, served in arrival order.
    waiters: VecDeque<Waiter>,
    /// Elements out under a lease, by receipt.
    pub leased: HashMap<Receipt, Lease>,
    /// Data bytes of the ready elements.
    bytes: u64,
    pushed: u64,
    popped: u64,
    expired: u64,
    /// Last push, pop or wait; an empty queue idle for long enough is dropped.
    pub last_active: Millis,
}

impl Queue {
    pub fn new(now: Millis) -> Queue {
        Queue {
            ready: BTreeMap::new(),
            next_back: FIRST_SEQ,
            waiters: VecDeque::new(),
            leased: HashMap::new(),
            bytes: 0,
            pushed: 0,
            popped: 0,
            expired: 0,
            last_active: now,
        }
    }

    /// Gives `element` to the longest-waiting consumer that is still there.
    /// Waiters whose consumer has gone are dropped on the way. Returns the
    /// element if nobody took it.
    pub fn hand_to_waiter(&mut self, mut element: Element, totals: &Totals) -> Result<(), Element> {
        while let Some(waiter) = self.waiters.pop_front() {
            totals.waiter_removed();
            match waiter.tx.send(element) {
                Ok(()) => return Ok(()),
                Err(back) => element = back,
            }
        }
        Err(element)
    }

    /// Puts `element` into the ready list and returns its sequence number.
    pub fn insert(&mut self, element: Element, end: End) -> u64 {
        let seq = match end {
            End::Back => {
                let seq = self.next_back;
                self.next_back += 1;
                seq
            }
            End::Front => match self.ready.first_key_value() {
                Some((&first, _)) => first - 1,
                None => self.next_back - 1,
            },
        };
        self.bytes += element.size();
        self.ready.insert(seq, element);
        seq
    }

    /// Removes and returns the head.
    pub fn pop_front(&mut self) -> Option<(u64, Element)> {
        let (seq, element) = self.ready.pop_first()?;
        self.bytes -= element.size();
        Some((seq, element))
    }

    /// Removes the element with sequence number `seq` (the sweeper's path).
    pub fn remove(&mut self, seq: u64) -> Option<Element> {
        let element = self.ready.remove(&seq)?;
        self.bytes -= element.size();
        Some(element)
    }

    pub fn add_waiter(&mut self, waiter: Waiter) {
        self.waiters.push_back(waiter);
    }

    /// Forgets the waiter `id` if it is still queued; true if it was.
    pub fn remove_waiter(&mut self, id: u64) -> bool {
        match self.waiters.iter().position(|w| w.id == id) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn count_push(&mut self) {
        self.pushed += 1;
    }
    pub fn count_pop(&mut self) {
        self.popped += 1;
    }
    pub fn count_expiry(&mut self) {
        self.expired += 1;
    }

    /// Empty, nobody waiting, and untouched since `idle_since`.
    pub fn is_idle(&self, idle_since: Millis) -> bool {
        self.ready.is_empty()
            && self.waiters.is_empty()
            && self.leased.is_empty()
            && self.last_active <= idle_since
    }

    /// Takes everything out, for shutdown: (ready, leased, waiter count).
    pub fn drain(&mut self) -> (Vec<Element>, Vec<Element>, usize) {
        let waiters = self.waiters.len();
        self.waiters.clear();
        let ready = std::mem::take(&mut self.ready).into_values().collect();
        let leased = self
            .leased
            .drain()
            .map(|(_, lease)| lease.element)
            .collect();
        self.bytes = 0;
        (ready, leased, waiters)
    }

    /// The ready elements, head first (for invariant checks in tests).
    #[cfg(test)]
    pub fn ready(&self) -> impl Iterator<Item = &Element> {
        self.ready.values()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            elements: self.ready.len() as u64,
            bytes: self.bytes,
            waiting: self.waiters.len() as u64,
            leased: self.leased.len() as u64,
            pushed: self.pushed,
            popped: self.popped,
            expired: self.expired,
        }
    }
}
