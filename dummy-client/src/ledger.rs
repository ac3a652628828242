//! Delivery accounting: which chat line is still owed to which bot.
//!
//! The client knows every member of every room, so each line a bot sends is expected at every
//! member of its room at that moment, the sender included. The ledger keeps, per sender, the
//! lines still in flight in sequence order, each with the set of receivers that have not had
//! it yet (a bitset over the room's member slots). A reception clears one bit, in O(1): the
//! line is found by `seq - base` in its sender's queue. Whatever is not in the ledger when it
//! arrives (a line never sent, a second copy, a line for another room) counts as
//! *unexpected*.
//!
//! A bot that leaves (disconnects) stops being a member: the lines it was still owed count as
//! *lost*, and later lines no longer expect it. At the end, [`Ledger::finish`] counts whatever
//! is still in flight as lost.
//!
//! # Failovers: due, and in doubt
//!
//! With several servers, a bot whose connection ends goes *away* ([`Ledger::away`]) and comes
//! back on another node ([`Ledger::rejoin`]), or gives up ([`Ledger::leave`]). A delivery is
//! then one of two kinds:
//!
//! - **due**: its receiver was in its room (its join confirmed, its connection up) when the
//!   line was sent, and the sender had seen that session of the receiver join (in its own
//!   `S2C_RoomJoined`, or by presence). Only then is the line sure to reach the receiver: the
//!   sender's node routes a line to the nodes it knows have members of the room, and it knows
//!   of a member on another node from the same event that tells the sender. A due delivery
//!   that never comes is **lost**.
//! - **in doubt**: the receiver was away when the line was sent, or back but not yet seen by
//!   the sender ([`Ledger::saw`] ends that); and every delivery still owed to a bot, or owed
//!   anywhere of a bot's own lines, when that bot goes away (its node may have died with
//!   them). A delivery in doubt that arrives is **received**; one that cannot arrive any more
//!   is **missed in failover**: its receiver got a later line of the same sender (the lines
//!   of one sender reach a receiver in order), left, or the run ended.
//!
//! So after [`Ledger::finish`], `expected == received + lost + missed_in_failover` holds
//! exactly, and a run without failovers has nothing in doubt: its accounting is the one
//! described first.
//!
//! The ledger is pure (no I/O, no clock): bots are indices `0..bots`, and bot `i` lives in
//! room `i / bots_per_room` at member slot `i % bots_per_room`. Who has seen whom costs one
//! bit per pair of room mates, allocated at the first failover.

use std::collections::VecDeque;
use std::ops::Range;

use serde::Serialize;

/// Counters of the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Chat lines sent.
    pub sent: u64,
    /// Deliveries expected: one per member of the room at the time of sending (due or in
    /// doubt, see the module docs), less those of rejected lines.
    pub expected: u64,
    /// Expected deliveries that arrived.
    pub received: u64,
    /// Due deliveries that will not arrive: their receiver left, or the run ended first.
    pub lost: u64,
    /// Deliveries in doubt (a failover gap) that did not arrive.
    pub missed_in_failover: u64,
    /// Chat lines that arrived and were not expected where they arrived (second copies
    /// excepted: see `duplicated`).
    pub unexpected: u64,
    /// Chat lines that arrived a second time where they had arrived already.
    pub duplicated: u64,
    /// Lines the server refused (answered with `S2C_Error` to the sender).
    pub rejected: u64,
    /// Due deliveries still expected.
    pub in_flight: u64,
    /// Deliveries in doubt still open.
    pub in_doubt: u64,
}

/// One line in flight.
#[derive(Clone, Copy, Debug)]
struct Entry {
    sent_at_us: u64,
    /// Receivers still owed this line, due or in doubt (bits set in its receiver set).
    remaining: u32,
}

/// The lines of one sender that are still in flight, oldest first.
#[derive(Debug, Default)]
struct Outbox {
    /// Sequence number of `entries[0]`.
    base: u32,
    /// Sequence number of the next line.
    next_seq: u32,
    entries: VecDeque<Entry>,
    /// `words` bitset words per entry, in the order of `entries`: receivers still owed it.
    bits: VecDeque<u64>,
    /// As `bits`: those of the receivers still owed it whose delivery is in doubt.
    doubt: VecDeque<u64>,
    /// Bits set in `doubt`.
    doubts: u64,
}

/// Which bot is owed which line. See the module docs.
#[derive(Debug)]
pub struct Ledger {
    bots: u32,
    bots_per_room: u32,
    /// Bitset words per room.
    words: usize,
    /// Members of room `r` in it now: `members[r * words..][..words]`.
    members: Vec<u64>,
    /// Members of room `r` away (failing over), as `members`.
    away: Vec<u64>,
    member_count: Vec<u32>,
    /// Room mates whose present session bot `b` has not seen join:
    /// `unseen[b * words..][..words]`. Empty until the first failover.
    unseen: Vec<u64>,
    outboxes: Vec<Outbox>,
    counts: Counts,
    /// The last line each bot had from each room mate (`receiver * bots_per_room + slot`),
    /// `u32::MAX` for none; empty unless [`Ledger::track_order`].
    last: Vec<u32>,
}

/// Pairs of room mates the ledger keeps the order of at most (64 MiB).
pub const MAX_ORDER_PAIRS: usize = 16 << 20;

impl Ledger {
    /// A ledger for bots `0..bots` in rooms of `bots_per_room` (at least 1), all rooms empty.
    pub fn new(bots: u32, bots_per_room: u32) -> Self {
        let bots_per_room = bots_per_room.max(1);
        let rooms = bots.div_ceil(bots_per_room) as usize;
        let words = (bots_per_room as usize).div_ceil(64);
        Ledger {
            bots,
            bots_per_room,
            words,
            members: vec![0; rooms * words],
            away: vec![0; rooms * words],
            member_count: vec![0; rooms],
            unseen: Vec::new(),
            outboxes: (0..bots).map(|_| Outbox::default()).collect(),
            counts: Counts::default(),
            last: Vec::new(),
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The room of `bot`.
    pub fn room_of(&self, bot: u32) -> u32 {
        bot / self.bots_per_room
    }

    /// The bots of room `room`.
    pub fn bots_of_room(&self, room: u32) -> Range<u32> {
        let start = room.saturating_mul(self.bots_per_room).min(self.bots);
        start..start.saturating_add(self.bots_per_room).min(self.bots)
    }

    /// Number of rooms.
    pub fn rooms(&self) -> u32 {
        self.member_count.len() as u32
    }

    /// Members of `room` in it now.
    pub fn member_count(&self, room: u32) -> u32 {
        self.member_count.get(room as usize).copied().unwrap_or(0)
    }

    /// Whether `bot` is in its room now (its join confirmed, its connection up).
    pub fn is_member(&self, bot: u32) -> bool {
        bot < self.bots && self.members[self.word_of(bot)] & self.slot(bot).1 != 0
    }

    /// Whether `bot` is away from its room, failing over.
    pub fn is_away(&self, bot: u32) -> bool {
        bot < self.bots && self.away[self.word_of(bot)] & self.slot(bot).1 != 0
    }

    /// The bitset word and mask of `bot`'s member slot.
    fn slot(&self, bot: u32) -> (usize, u64) {
        let slot = (bot % self.bots_per_room) as usize;
        (slot / 64, 1u64 << (slot % 64))
    }

    /// The index of `bot`'s word in the per-room bitsets (`members`, `away`).
    fn word_of(&self, bot: u32) -> usize {
        self.room_of(bot) as usize * self.words + self.slot(bot).0
    }

    /// `bot`'s join of its room is confirmed: lines sent from now on are due at it.
    pub fn join(&mut self, bot: u32) {
        if bot >= self.bots || self.is_member(bot) {
            return;
        }
        let (at, mask) = (self.word_of(bot), self.slot(bot).1);
        self.members[at] |= mask;
        self.away[at] &= !mask;
        let room = self.room_of(bot) as usize;
        self.member_count[room] += 1;
    }

    /// `bot` is back in its room after a failover (or in it for the first time by one), and
    /// of its room mates it has seen the sessions in `seen` (its `S2C_RoomJoined` listed
    /// them): lines it sends are due at those, in doubt at the others until it sees them
    /// ([`Ledger::saw`]). Lines its room mates send are in doubt at it until each sees it.
    pub fn rejoin(&mut self, bot: u32, seen: impl IntoIterator<Item = u32>) {
        if bot >= self.bots || self.is_member(bot) {
            return;
        }
        self.join(bot);
        self.track_sight();
        let room = self.room_of(bot);
        let size = self.bots_of_room(room).len();
        let row = &mut self.unseen[bot as usize * self.words..][..self.words];
        for (w, word) in row.iter_mut().enumerate() {
            let bits = size.saturating_sub(w * 64).min(64);
            *word = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
        }
        for mate in seen.into_iter().chain([bot]) {
            if mate < self.bots && self.room_of(mate) == room {
                let (word, mask) = self.slot(mate);
                self.unseen[bot as usize * self.words + word] &= !mask;
            }
        }
        // Every room mate still has to see this session join.
        let (word, mask) = self.slot(bot);
        for mate in self.bots_of_room(room).filter(|&m| m != bot) {
            self.unseen[mate as usize * self.words + word] |= mask;
        }
    }

    /// `observer` saw `mate` join (presence): lines it sends from now on are due at `mate`
    /// while `mate` stays in the room.
    pub fn saw(&mut self, observer: u32, mate: u32) {
        if self.unseen.is_empty()
            || observer >= self.bots
            || mate >= self.bots
            || self.room_of(observer) != self.room_of(mate)
        {
            return;
        }
        let (word, mask) = self.slot(mate);
        self.unseen[observer as usize * self.words + word] &= !mask;
    }

    /// Allocates the bits of who has seen whom, at the first failover.
    fn track_sight(&mut self) {
        if self.unseen.is_empty() {
            self.unseen = vec![0; self.bots as usize * self.words];
        }
    }

    /// `bot`'s connection ended and it fails over: it is away from its room. Every delivery
    /// still owed to it, and every one still owed of its own lines, is now in doubt; so are
    /// the lines of its room mates until it is back and each has seen it. Returns how many
    /// deliveries went into doubt.
    pub fn away(&mut self, bot: u32) -> u64 {
        if !self.is_member(bot) {
            return 0;
        }
        self.track_sight();
        let room = self.room_of(bot);
        let (at, (word, mask)) = (self.word_of(bot), self.slot(bot));
        self.members[at] &= !mask;
        self.away[at] |= mask;
        self.member_count[room as usize] -= 1;

        let words = self.words;
        let mut doubted = 0;
        for sender in self.bots_of_room(room) {
            let outbox = &mut self.outboxes[sender as usize];
            let mut moved = 0;
            if sender == bot {
                for (bits, doubt) in outbox.bits.iter().zip(outbox.doubt.iter_mut()) {
                    let due = bits & !*doubt;
                    *doubt |= due;
                    moved += u64::from(due.count_ones());
                }
            } else {
                for i in 0..outbox.entries.len() {
                    let at = i * words + word;
                    if outbox.bits[at] & mask != 0 && outbox.doubt[at] & mask == 0 {
                        outbox.doubt[at] |= mask;
                        moved += 1;
                    }
                }
            }
            outbox.doubts += moved;
            doubted += moved;
        }
        for mate in self.bots_of_room(room) {
            self.unseen[mate as usize * words + word] |= mask;
        }
        self.counts.in_flight -= doubted;
        self.counts.in_doubt += doubted;
        doubted
    }

    /// `bot` left its room for good (it disconnected, or gave up failing over): the due
    /// lines it was still owed are lost, those in doubt missed, and later lines do not
    /// expect it. Returns how many deliveries were lost.
    pub fn leave(&mut self, bot: u32) -> u64 {
        let (member, away) = (self.is_member(bot), self.is_away(bot));
        if !member && !away {
            return 0;
        }
        let room = self.room_of(bot);
        let (at, (word, mask)) = (self.word_of(bot), self.slot(bot));
        self.members[at] &= !mask;
        self.away[at] &= !mask;
        if member {
            self.member_count[room as usize] -= 1;
        }

        let (mut lost, mut missed) = (0, 0);
        for sender in self.bots_of_room(room) {
            let outbox = &mut self.outboxes[sender as usize];
            for (i, entry) in outbox.entries.iter_mut().enumerate() {
                let at = i * self.words + word;
                if outbox.bits[at] & mask == 0 {
                    continue;
                }
                outbox.bits[at] &= !mask;
                entry.remaining -= 1;
                if outbox.doubt[at] & mask != 0 {
                    outbox.doubt[at] &= !mask;
                    outbox.doubts -= 1;
                    missed += 1;
                } else {
                    lost += 1;
                }
            }
            pop_done(outbox, self.words);
        }
        self.counts.lost += lost;
        self.counts.in_flight -= lost;
        self.counts.missed_in_failover += missed;
        self.counts.in_doubt -= missed;
        lost
    }

    /// `sender` sends a line at `sent_at_us`: it is due at every member of its room in it now
    /// that the sender has seen there, and in doubt at the others in it and those away.
    /// Returns the line's sequence number, or `None` (and records nothing) when the sender
    /// is not in its room itself.
    pub fn send(&mut self, sender: u32, sent_at_us: u64) -> Option<u32> {
        if !self.is_member(sender) {
            return None;
        }
        let words = self.words;
        let base = self.room_of(sender) as usize * words;
        let row = sender as usize * words;
        let unseen = self.unseen.get(row..row + words);
        let outbox = &mut self.outboxes[sender as usize];
        let seq = outbox.next_seq;
        outbox.next_seq = seq.wrapping_add(1);
        if outbox.entries.is_empty() {
            outbox.base = seq;
        }
        let (mut due_count, mut doubt_count) = (0, 0);
        for w in 0..words {
            let (present, away) = (self.members[base + w], self.away[base + w]);
            let unseen = unseen.map_or(0, |row| row[w]);
            let due = present & !unseen;
            let doubt = (present & unseen) | away;
            outbox.bits.push_back(due | doubt);
            outbox.doubt.push_back(doubt);
            due_count += u64::from(due.count_ones());
            doubt_count += u64::from(doubt.count_ones());
        }
        outbox.doubts += doubt_count;
        outbox.entries.push_back(Entry {
            sent_at_us,
            remaining: (due_count + doubt_count) as u32,
        });
        self.counts.sent += 1;
        self.counts.expected += due_count + doubt_count;
        self.counts.in_flight += due_count;
        self.counts.in_doubt += doubt_count;
        Some(seq)
    }

    /// Line `seq` of `sender` arrived at `receiver`. Returns its `sent_at_us` when it was
    /// expected there, due or in doubt (and records the delivery); `None` when it was not,
    /// counted as unexpected.
    pub fn receive(&mut self, receiver: u32, sender: u32, seq: u32) -> Option<u64> {
        let found = self.take(receiver, sender, seq);
        match found {
            Some(_) => self.counts.received += 1,
            None if self.arrived_before(receiver, sender, seq) => self.counts.duplicated += 1,
            None => self.counts.unexpected += 1,
        }
        if found.is_some() {
            if let Some(last) = self.last_slot(receiver, sender) {
                self.last[last] = seq;
            }
        }
        found
    }

    /// Tells second copies apart from other unexpected lines from now on: the ledger keeps
    /// the last line each bot had from each room mate (4 bytes a pair; not kept when that
    /// would pass [`MAX_ORDER_PAIRS`] pairs). Lines of one sender reach a receiver in order,
    /// so one at or before the last it had is a second copy (or out of order).
    pub fn track_order(&mut self) {
        let pairs = self.bots as usize * self.bots_per_room as usize;
        if pairs <= MAX_ORDER_PAIRS {
            self.last = vec![u32::MAX; pairs];
        }
    }

    /// Where the last line `receiver` had from `sender` is kept, when it is.
    fn last_slot(&self, receiver: u32, sender: u32) -> Option<usize> {
        if self.last.is_empty() || receiver >= self.bots || sender >= self.bots {
            return None;
        }
        if self.room_of(receiver) != self.room_of(sender) {
            return None;
        }
        let slot = (sender % self.bots_per_room) as usize;
        Some(receiver as usize * self.bots_per_room as usize + slot)
    }

    /// Whether `receiver` had line `seq` of `sender`, or a later one, already.
    fn arrived_before(&self, receiver: u32, sender: u32, seq: u32) -> bool {
        self.last_slot(receiver, sender)
            .is_some_and(|at| self.last[at] != u32::MAX && seq <= self.last[at])
    }

    /// Counts one unexpected line that could not even be attributed to a sender (unknown
    /// `from`, content without a sequence number).
    pub fn unexpected(&mut self) {
        self.counts.unexpected += 1;
    }

    fn take(&mut self, receiver: u32, sender: u32, seq: u32) -> Option<u64> {
        if receiver >= self.bots || sender >= self.bots {
            return None;
        }
        if self.room_of(receiver) != self.room_of(sender) {
            return None;
        }
        let (word, mask) = self.slot(receiver);
        let words = self.words;
        let outbox = &mut self.outboxes[sender as usize];
        let index = seq.wrapping_sub(outbox.base) as usize;
        if index >= outbox.entries.len() {
            return None;
        }
        let at = index * words + word;
        if outbox.bits[at] & mask == 0 {
            return None;
        }
        outbox.bits[at] &= !mask;
        if outbox.doubt[at] & mask != 0 {
            outbox.doubt[at] &= !mask;
            outbox.doubts -= 1;
            self.counts.in_doubt -= 1;
        } else {
            self.counts.in_flight -= 1;
        }
        let entry = &mut outbox.entries[index];
        entry.remaining -= 1;
        let sent_at_us = entry.sent_at_us;
        // Lines of one sender reach a receiver in order: earlier ones in doubt at it that
        // have not come will not come.
        if outbox.doubts > 0 {
            let mut missed = 0;
            for i in 0..index {
                let at = i * words + word;
                if outbox.doubt[at] & mask != 0 {
                    outbox.doubt[at] &= !mask;
                    outbox.bits[at] &= !mask;
                    outbox.entries[i].remaining -= 1;
                    missed += 1;
                }
            }
            outbox.doubts -= missed;
            self.counts.in_doubt -= missed;
            self.counts.missed_in_failover += missed;
        }
        pop_done(outbox, words);
        Some(sent_at_us)
    }

    /// The server refused a line of `sender`. Lines of one sender are handled in order and the
    /// sender gets its own lines back, so the refused one is the oldest that the sender itself
    /// is still due. It is no longer expected anywhere. Returns whether one was found.
    pub fn reject_oldest(&mut self, sender: u32) -> bool {
        if sender >= self.bots {
            return false;
        }
        let (word, mask) = self.slot(sender);
        let words = self.words;
        let outbox = &mut self.outboxes[sender as usize];
        let Some(index) = (0..outbox.entries.len()).find(|i| {
            let at = i * words + word;
            outbox.bits[at] & mask != 0 && outbox.doubt[at] & mask == 0
        }) else {
            return false;
        };
        let range = index * words..(index + 1) * words;
        let (mut due, mut doubt) = (0, 0);
        for (bits, doubts) in outbox
            .bits
            .range_mut(range.clone())
            .zip(outbox.doubt.range_mut(range))
        {
            due += u64::from((*bits & !*doubts).count_ones());
            doubt += u64::from(doubts.count_ones());
            *bits = 0;
            *doubts = 0;
        }
        outbox.entries[index].remaining = 0;
        outbox.doubts -= doubt;
        pop_done(outbox, words);
        self.counts.rejected += 1;
        self.counts.expected -= due + doubt;
        self.counts.in_flight -= due;
        self.counts.in_doubt -= doubt;
        true
    }

    /// The run is over: every due delivery still in flight is lost, every one in doubt
    /// missed. Returns how many were lost.
    pub fn finish(&mut self) -> u64 {
        let lost = self.counts.in_flight;
        for outbox in &mut self.outboxes {
            outbox.entries.clear();
            outbox.bits.clear();
            outbox.doubt.clear();
            outbox.doubts = 0;
            outbox.base = outbox.next_seq;
        }
        self.counts.lost += lost;
        self.counts.in_flight = 0;
        self.counts.missed_in_failover += self.counts.in_doubt;
        self.counts.in_doubt = 0;
        lost
    }
}

/// Drops the lines at the front that nobody is owed any more.
fn pop_done(outbox: &mut Outbox, words: usize) {
    while outbox.entries.front().is_some_and(|e| e.remaining == 0) {
        outbox.entries.pop_front();
        outbox.bits.drain(..words);
        outbox.doubt.drain(..words);
        outbox.base = outbox.base.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bots 0..3 in room 0, 3..6 in room 1, all joined.
    fn two_rooms_of_three() -> Ledger {
        let mut ledger = Ledger::new(6, 3);
        for bot in 0..6 {
            ledger.join(bot);
        }
        ledger
    }

    #[test]
    fn a_line_is_expected_at_every_member_including_the_sender() {
        let mut ledger = two_rooms_of_three();
        let seq = ledger.send(1, 1_000).unwrap();
        assert_eq!(ledger.counts().expected, 3);
        assert_eq!(ledger.counts().in_flight, 3);
        for receiver in 0..3 {
            assert_eq!(ledger.receive(receiver, 1, seq), Some(1_000));
        }
        let counts = ledger.counts();
        assert_eq!((counts.sent, counts.received, counts.in_flight), (1, 3, 0));
        assert_eq!((counts.lost, counts.unexpected), (0, 0));
    }

    #[test]
    fn a_second_copy_of_a_line_is_a_duplicate_when_the_order_is_tracked() {
        let mut ledger = two_rooms_of_three();
        ledger.track_order();
        let a = ledger.send(0, 1).unwrap();
        let b = ledger.send(0, 2).unwrap();
        assert!(ledger.receive(2, 0, a).is_some());
        assert!(
            ledger.receive(2, 0, a).is_none(),
            "again, still in flight elsewhere"
        );
        for receiver in 0..3 {
            assert!(ledger.receive(receiver, 0, b).is_some());
        }
        assert!(ledger.receive(1, 0, b).is_none(), "again, done everywhere");
        assert!(ledger.receive(1, 2, 0).is_none(), "bot 2 sent nothing");
        let c = ledger.counts();
        assert_eq!((c.duplicated, c.unexpected, c.received), (2, 1, 4), "{c:?}");
    }

    #[test]
    fn a_second_copy_of_a_line_is_unexpected() {
        let mut ledger = two_rooms_of_three();
        let seq = ledger.send(0, 1).unwrap();
        assert!(ledger.receive(2, 0, seq).is_some());
        assert!(ledger.receive(2, 0, seq).is_none());
        assert_eq!(ledger.counts().unexpected, 1);
        assert_eq!(ledger.counts().received, 1);
        assert_eq!(ledger.counts().in_flight, 2);
    }

    #[test]
    fn a_line_from_another_room_or_never_sent_is_unexpected() {
        let mut ledger = two_rooms_of_three();
        let seq = ledger.send(0, 1).unwrap();
        assert!(ledger.receive(4, 0, seq).is_none(), "bot 4 is in room 1");
        assert!(ledger.receive(1, 0, seq + 1).is_none(), "not sent yet");
        assert!(ledger.receive(1, 2, 0).is_none(), "bot 2 sent nothing");
        assert!(ledger.receive(1, 99, 0).is_none(), "no such bot");
        assert_eq!(ledger.counts().unexpected, 4);
        assert_eq!(ledger.counts().in_flight, 3);
    }

    #[test]
    fn lines_arriving_out_of_sequence_are_each_found() {
        let mut ledger = two_rooms_of_three();
        let a = ledger.send(0, 10).unwrap();
        let b = ledger.send(0, 20).unwrap();
        let c = ledger.send(0, 30).unwrap();
        assert_eq!(ledger.receive(1, 0, c), Some(30));
        assert_eq!(ledger.receive(1, 0, a), Some(10));
        for receiver in [0, 2] {
            for seq in [a, b, c] {
                assert!(ledger.receive(receiver, 0, seq).is_some());
            }
        }
        assert_eq!(ledger.receive(1, 0, b), Some(20));
        assert_eq!(ledger.counts().in_flight, 0);
        assert_eq!(ledger.counts().received, 9);
    }

    #[test]
    fn a_receiver_that_leaves_loses_what_it_was_owed_and_is_not_expected_later() {
        let mut ledger = two_rooms_of_three();
        let first = ledger.send(0, 1).unwrap();
        ledger.send(1, 2).unwrap();
        assert!(ledger.receive(2, 0, first).is_some());
        assert_eq!(ledger.leave(2), 1, "bot 2 was still owed bot 1's line");
        assert_eq!(ledger.leave(2), 0, "leaving twice loses nothing more");
        assert!(!ledger.is_member(2));

        ledger.send(0, 3).unwrap();
        let counts = ledger.counts();
        assert_eq!(counts.expected, 3 + 3 + 2);
        assert_eq!(counts.lost, 1);
        assert_eq!(
            counts.in_flight,
            3 + 3 + 2 - 1 - 1,
            "one received, one lost"
        );
    }

    #[test]
    fn a_bot_that_left_cannot_send() {
        let mut ledger = two_rooms_of_three();
        ledger.leave(4);
        assert_eq!(ledger.send(4, 1), None);
        assert_eq!(ledger.counts().sent, 0);
    }

    #[test]
    fn finish_counts_everything_in_flight_as_lost() {
        let mut ledger = two_rooms_of_three();
        let seq = ledger.send(3, 1).unwrap();
        ledger.send(0, 1).unwrap();
        assert!(ledger.receive(4, 3, seq).is_some());
        assert_eq!(ledger.finish(), 5);
        let counts = ledger.counts();
        assert_eq!(counts.expected, counts.received + counts.lost);
        assert_eq!(counts.in_flight, 0);
        assert!(ledger.receive(5, 3, seq).is_none(), "too late now");
    }

    #[test]
    fn a_rejected_line_is_expected_nowhere() {
        let mut ledger = two_rooms_of_three();
        let a = ledger.send(0, 1).unwrap();
        let b = ledger.send(0, 2).unwrap();
        assert!(ledger.receive(0, 0, a).is_some());
        assert!(
            ledger.reject_oldest(0),
            "b is the oldest the sender has not had"
        );
        assert!(ledger.receive(1, 0, b).is_none());
        assert!(ledger.receive(1, 0, a).is_some());
        let counts = ledger.counts();
        assert_eq!(counts.rejected, 1);
        assert_eq!(counts.expected, 3);
        assert_eq!(counts.in_flight, 1);
        assert_eq!(counts.unexpected, 1);
        assert!(!ledger.reject_oldest(3), "bot 3 has nothing in flight");
    }

    #[test]
    fn rooms_larger_than_one_bitset_word_work() {
        let mut ledger = Ledger::new(300, 130);
        for bot in 0..300 {
            ledger.join(bot);
        }
        assert_eq!(ledger.rooms(), 3);
        assert_eq!(ledger.bots_of_room(2), 260..300);
        assert_eq!(ledger.member_count(2), 40);
        let seq = ledger.send(129, 7).unwrap();
        assert_eq!(ledger.counts().expected, 130);
        for receiver in 0..130 {
            assert_eq!(ledger.receive(receiver, 129, seq), Some(7));
        }
        assert!(ledger.receive(130, 129, seq).is_none());
        assert_eq!(ledger.counts().in_flight, 0);
        ledger.send(299, 8).unwrap();
        assert_eq!(ledger.leave(299), 1);
        assert_eq!(ledger.counts().in_flight, 39);
    }

    #[test]
    fn only_confirmed_members_are_expected() {
        let mut ledger = Ledger::new(4, 4);
        ledger.join(0);
        ledger.join(1);
        let seq = ledger.send(0, 1).unwrap();
        assert_eq!(ledger.counts().expected, 2);
        ledger.join(2);
        assert!(
            ledger.receive(2, 0, seq).is_none(),
            "bot 2 joined after the line was sent"
        );
    }

    fn assert_adds_up(ledger: &Ledger) {
        let c = ledger.counts();
        assert_eq!(
            c.expected,
            c.received + c.lost + c.missed_in_failover + c.in_flight + c.in_doubt,
            "{c:?}"
        );
    }

    #[test]
    fn what_a_bot_was_owed_when_it_failed_over_is_in_doubt_and_missed_not_lost() {
        let mut ledger = two_rooms_of_three();
        let first = ledger.send(0, 1).unwrap();
        ledger.send(1, 2).unwrap();
        assert!(ledger.receive(2, 0, first).is_some());
        assert_eq!(ledger.away(2), 1, "bot 1's line to bot 2");
        assert_eq!(ledger.away(2), 0, "away twice changes nothing");
        assert!(ledger.is_away(2) && !ledger.is_member(2));
        assert_eq!(ledger.counts().in_doubt, 1);
        assert_adds_up(&ledger);
        ledger.finish();
        let c = ledger.counts();
        assert_eq!((c.lost, c.missed_in_failover), (3 + 3 - 1 - 1, 1), "{c:?}");
        assert_adds_up(&ledger);
    }

    #[test]
    fn a_line_in_doubt_that_arrives_is_received() {
        let mut ledger = two_rooms_of_three();
        ledger.away(2);
        let seq = ledger.send(0, 5).unwrap();
        let c = ledger.counts();
        assert_eq!((c.expected, c.in_flight, c.in_doubt), (3, 2, 1), "{c:?}");
        ledger.rejoin(2, [0, 1]);
        assert_eq!(ledger.receive(2, 0, seq), Some(5));
        let c = ledger.counts();
        assert_eq!((c.received, c.in_doubt, c.unexpected), (1, 0, 0), "{c:?}");
        assert_adds_up(&ledger);
    }

    #[test]
    fn a_line_in_doubt_passed_over_by_a_later_line_of_its_sender_is_missed() {
        let mut ledger = two_rooms_of_three();
        ledger.away(2);
        let while_away = ledger.send(0, 1).unwrap();
        ledger.rejoin(2, [0, 1]);
        let unseen = ledger.send(0, 2).unwrap();
        assert_eq!(ledger.counts().in_doubt, 2, "bot 0 has not seen bot 2 back");
        ledger.saw(0, 2);
        let seen = ledger.send(0, 3).unwrap();
        assert_eq!(ledger.counts().in_doubt, 2, "due at bot 2 now");
        assert_eq!(ledger.receive(2, 0, seen), Some(3));
        let c = ledger.counts();
        assert_eq!(
            (c.missed_in_failover, c.in_doubt, c.lost),
            (2, 0, 0),
            "{c:?}"
        );
        assert!(ledger.receive(2, 0, while_away).is_none(), "too late now");
        assert!(ledger.receive(2, 0, unseen).is_none());
        assert_eq!(ledger.counts().unexpected, 2);
        assert_adds_up(&ledger);
    }

    #[test]
    fn a_bot_back_is_due_the_lines_of_those_that_saw_it_and_owes_its_own_to_those_it_saw() {
        let mut ledger = two_rooms_of_three();
        ledger.away(2);
        ledger.rejoin(2, [0]);
        // Bot 2 saw bot 0 in its S2C_RoomJoined, not bot 1; neither has seen bot 2 yet.
        ledger.send(2, 1).unwrap();
        let c = ledger.counts();
        assert_eq!(
            (c.in_flight, c.in_doubt),
            (2, 1),
            "due at 0 and 2, in doubt at 1"
        );
        ledger.send(1, 2).unwrap();
        assert_eq!(ledger.counts().in_doubt, 2, "in doubt at 2");
        ledger.saw(1, 2);
        ledger.send(1, 3).unwrap();
        let c = ledger.counts();
        assert_eq!((c.in_flight, c.in_doubt), (2 + 2 + 3, 2), "{c:?}");
        ledger.saw(2, 1);
        ledger.send(2, 4).unwrap();
        assert_eq!(ledger.counts().in_doubt, 2, "due everywhere now");
        ledger.saw(0, 4);
        assert_eq!(
            ledger.counts().in_doubt,
            2,
            "another room's bot changes nothing"
        );
        assert_adds_up(&ledger);
    }

    #[test]
    fn the_lines_of_a_bot_that_fails_over_are_in_doubt_everywhere_they_are_owed() {
        let mut ledger = two_rooms_of_three();
        let a = ledger.send(2, 1).unwrap();
        let b = ledger.send(2, 2).unwrap();
        assert!(ledger.receive(0, 2, a).is_some());
        // Bot 2's node may have died with them: a 2, b 3, less the one received.
        assert_eq!(ledger.away(2), 5);
        assert_eq!(ledger.receive(1, 2, b), Some(2), "its node passed it on");
        ledger.finish();
        let c = ledger.counts();
        assert_eq!(
            (c.received, c.lost, c.missed_in_failover),
            (2, 0, 4),
            "{c:?}"
        );
        assert_adds_up(&ledger);
    }

    #[test]
    fn a_bot_that_gives_up_misses_what_was_in_doubt_and_is_expected_no_more() {
        let mut ledger = two_rooms_of_three();
        ledger.send(0, 1).unwrap();
        ledger.away(2);
        ledger.send(1, 2).unwrap();
        assert_eq!(ledger.leave(2), 0, "nothing due at it was lost");
        let c = ledger.counts();
        assert_eq!((c.missed_in_failover, c.in_doubt), (2, 0), "{c:?}");
        assert!(!ledger.is_away(2) && !ledger.is_member(2));
        ledger.send(0, 3).unwrap();
        assert_eq!(ledger.counts().expected, 3 + 3 + 2);
        assert_eq!(ledger.send(2, 4), None, "it sends nothing any more");
        assert_adds_up(&ledger);
    }

    #[test]
    fn a_refused_line_is_the_oldest_the_sender_is_due_not_one_in_doubt_at_it() {
        let mut ledger = two_rooms_of_three();
        let old = ledger.send(0, 1).unwrap();
        ledger.away(0);
        ledger.rejoin(0, [1, 2]);
        let new = ledger.send(0, 2).unwrap();
        assert!(
            ledger.reject_oldest(0),
            "the new line, not the old one in doubt"
        );
        assert!(ledger.receive(1, 0, new).is_none());
        assert!(ledger.receive(1, 0, old).is_some());
        let c = ledger.counts();
        assert_eq!((c.rejected, c.expected), (1, 3), "{c:?}");
        assert_adds_up(&ledger);
    }

    #[test]
    fn the_accounting_adds_up_through_any_order_of_failovers() {
        // A fixed pseudo-random walk over every operation, in rooms of 70 (two words).
        let mut ledger = Ledger::new(140, 70);
        for bot in 0..140 {
            ledger.join(bot);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(n)) as u32
        };
        let mut sent: Vec<(u32, u32)> = Vec::new();
        for _ in 0..20_000 {
            let bot = next(140);
            match next(10) {
                0..=3 => {
                    if let Some(seq) = ledger.send(bot, 1) {
                        sent.push((bot, seq));
                    }
                }
                4..=6 if !sent.is_empty() => {
                    let (sender, seq) = sent[next(sent.len() as u32) as usize];
                    let room = ledger.room_of(sender);
                    let receiver = ledger.bots_of_room(room).start + next(70);
                    ledger.receive(receiver, sender, seq);
                }
                7 => {
                    ledger.away(bot);
                }
                8 => {
                    let room = ledger.room_of(bot);
                    let start = ledger.bots_of_room(room).start;
                    let seen: Vec<u32> = (0..next(70)).map(|_| start + next(70)).collect();
                    ledger.rejoin(bot, seen);
                    ledger.saw(start + next(70), bot);
                }
                9 => {
                    if next(20) == 0 {
                        ledger.leave(bot);
                    } else {
                        ledger.reject_oldest(bot);
                    }
                }
                _ => {}
            }
            assert_adds_up(&ledger);
        }
        ledger.finish();
        assert_adds_up(&ledger);
        let c = ledger.counts();
        assert!(
            c.missed_in_failover > 0 && c.received > 0 && c.lost > 0,
            "{c:?}"
        );
    }
}
