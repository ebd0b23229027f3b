//! One FIFO queue: its ready elements and the consumers waiting on it.

use std::collections::{HashMap, VecDeque};

use tokio::sync::oneshot;

use super::clock::Millis;
use super::element::Element;
use super::stats::Totals;
use crate::backend::ids::{ElementId, Receipt};
use crate::backend::stats::Counts;

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
    /// Ready elements in order; slot `i` holds sequence number `head_seq + i`.
    /// A `VecDeque` rather than a map keyed by sequence number: about half
    /// the memory per element (a B-tree filled in order is half empty), and
    /// O(1) at both ends. An element the sweeper expires from the middle
    /// leaves a `None` until it reaches the head or the queue is compacted.
    pub(super) ready: VecDeque<Option<Element>>,
    /// Sequence number of `ready[0]`.
    head_seq: u64,
    /// Elements in `ready` (slots that are not `None`).
    live: usize,
    /// The deadline chain: the elements pushed at the back with a deadline
    /// no earlier than any chain element before them. In queue order their
    /// deadlines never decrease, so the first one expires first and the
    /// namespace's expiry index needs one entry for the whole chain instead
    /// of one per element (with one lifetime per queue, that is every
    /// element). Others (shorter lifetimes than earlier pushes, elements put
    /// back at the head) have entries of their own. This is the sequence
    /// number of the first chain element.
    chain_head: Option<u64>,
    /// Latest deadline of the chain; a back push at or after it joins.
    chain_max: Millis,
    /// The deadline of this queue's chain entry in the expiry index, if it
    /// has one. It is never later than the chain head's deadline.
    pub chain_key: Option<Millis>,
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
            ready: VecDeque::new(),
            head_seq: FIRST_SEQ,
            live: 0,
            chain_head: None,
            chain_max: Millis(0),
            chain_key: None,
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
    /// `indexed` of the element in the list tells whether it needs its own
    /// entry in the expiry index; if not, it joined the chain.
    pub fn insert(&mut self, mut element: Element, end: End) -> (u64, bool) {
        self.bytes += element.size();
        self.live += 1;
        let joins = end == End::Back && element.deadline >= self.chain_max;
        element.indexed = !joins;
        let deadline = element.deadline;
        // A first element gets a slot of its own rather than the four a
        // growing list starts with: most queues of a flood of namespaces
        // hold one.
        if self.ready.capacity() == 0 {
            self.ready.reserve_exact(1);
        }
        let seq = match end {
            End::Back => {
                self.ready.push_back(Some(element));
                self.head_seq + self.ready.len() as u64 - 1
            }
            End::Front => {
                self.head_seq -= 1;
                self.ready.push_front(Some(element));
                self.head_seq
            }
        };
        if joins {
            self.chain_max = deadline;
            self.chain_head.get_or_insert(seq);
        }
        (seq, !joins)
    }

    /// The deadline of the chain's first element.
    pub fn chain_deadline(&self) -> Option<Millis> {
        let seq = self.chain_head?;
        self.slot(seq).map(|e| e.deadline)
    }

    fn slot(&self, seq: u64) -> Option<&Element> {
        let index = usize::try_from(seq.checked_sub(self.head_seq)?).ok()?;
        self.ready.get(index)?.as_ref()
    }

    /// The chain element at `seq` is gone: the chain now starts at the next
    /// chain element after it. The scan only ever moves forward, so over the
    /// queue's life each slot is passed about once.
    fn advance_chain(&mut self, seq: u64) {
        if self.chain_head != Some(seq) {
            return;
        }
        let start = (seq + 1).saturating_sub(self.head_seq) as usize;
        let next = self
            .ready
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, slot)| slot.as_ref().is_some_and(|e| !e.indexed))
            .map(|(i, _)| self.head_seq + i as u64);
        self.chain_head = next;
        if next.is_none() {
            self.chain_max = Millis(0);
        }
    }

    /// Removes chain elements whose deadline has passed at `now`, earliest
    /// first, at most `limit` of them.
    pub fn expire_chain(&mut self, now: Millis, limit: usize) -> Vec<Element> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(seq) = self.chain_head else { break };
            if !self.chain_deadline().is_some_and(|d| d.has_passed(now)) {
                break;
            }
            match self.remove(seq) {
                Some(element) => out.push(element),
                None => break,
            }
        }
        out
    }

    /// Removes and returns the head.
    pub fn pop_front(&mut self) -> Option<(u64, Element)> {
        let element = loop {
            let slot = self.ready.pop_front()?;
            self.head_seq += 1;
            if let Some(element) = slot {
                break element;
            }
        };
        let seq = self.head_seq - 1;
        self.live -= 1;
        self.bytes -= element.size();
        if !element.indexed {
            self.advance_chain(seq);
        }
        self.skip_holes();
        // Give back the memory of a backlog once it has drained.
        let cap = self.ready.capacity();
        if cap > 64 && self.ready.len() < cap / 4 {
            self.ready.shrink_to(self.ready.len() * 2);
        }
        Some((seq, element))
    }

    /// The sequence number of ready element `id`, searched from the tail
    /// (where a push just made is). Only a change being taken back looks
    /// an element up by id.
    pub fn find(&self, id: ElementId) -> Option<u64> {
        let i = self
            .ready
            .iter()
            .rposition(|slot| slot.as_ref().is_some_and(|e| e.id == id))?;
        Some(self.head_seq + i as u64)
    }

    /// Removes the element with sequence number `seq` (the sweeper's path).
    pub fn remove(&mut self, seq: u64) -> Option<Element> {
        let index = usize::try_from(seq.checked_sub(self.head_seq)?).ok()?;
        let element = self.ready.get_mut(index)?.take()?;
        self.live -= 1;
        self.bytes -= element.size();
        if !element.indexed {
            self.advance_chain(seq);
        }
        self.skip_holes();
        Some(element)
    }

    /// Drops the holes at the head, so the head slot always holds an element.
    fn skip_holes(&mut self) {
        while self.ready.front().is_some_and(Option::is_none) {
            self.ready.pop_front();
            self.head_seq += 1;
        }
    }

    /// When holes outnumber elements, closes them up and returns each moved
    /// indexed element's (old sequence number, new one, deadline), so the
    /// caller can re-key its expiry index. Amortised O(1) per removal.
    pub fn compact(&mut self) -> Option<Vec<(u64, u64, Millis)>> {
        let holes = self.ready.len() - self.live;
        if holes <= self.live.max(32) {
            return None;
        }
        let mut moved = Vec::with_capacity(self.live);
        let old = std::mem::take(&mut self.ready);
        let mut kept = VecDeque::with_capacity(self.live);
        for (i, slot) in old.into_iter().enumerate() {
            if let Some(element) = slot {
                let (from, to) = (self.head_seq + i as u64, self.head_seq + kept.len() as u64);
                if Some(from) == self.chain_head {
                    self.chain_head = Some(to);
                }
                if from != to && element.indexed {
                    moved.push((from, to, element.deadline));
                }
                kept.push_back(Some(element));
            }
        }
        self.ready = kept;
        Some(moved)
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
    /// A push or pop taken back because the log could not record it.
    pub fn uncount_push(&mut self) {
        self.pushed = self.pushed.saturating_sub(1);
    }
    pub fn uncount_pop(&mut self) {
        self.popped = self.popped.saturating_sub(1);
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
        let ready = std::mem::take(&mut self.ready)
            .into_iter()
            .flatten()
            .collect();
        self.live = 0;
        self.chain_head = None;
        self.chain_max = Millis(0);
        self.chain_key = None;
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
        self.ready.iter().flatten()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            elements: self.live as u64,
            bytes: self.bytes,
            waiting: self.waiters.len() as u64,
            leased: self.leased.len() as u64,
            pushed: self.pushed,
            popped: self.popped,
            expired: self.expired,
        }
    }
}
