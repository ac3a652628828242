//! Delivery accounting: which chat line is still owed to which bot.
//!
//! The client knows every member of every room, so each line a bot sends is expected at every
//! confirmed member of its room at that moment, the sender included. The ledger keeps, per
//! sender, the lines still in flight in sequence order, each with the set of receivers that
//! have not had it yet (a bitset over the room's member slots). A reception clears one bit,
//! in O(1): the line is found by `seq - base` in its sender's queue. Whatever is not in the
//! ledger when it arrives (a line never sent, a second copy, a line for another room) counts
//! as *unexpected*.
//!
//! A bot that leaves (disconnects) stops being a member: the lines it was still owed count as
//! *lost*, and later lines no longer expect it. At the end, [`Ledger::finish`] counts whatever
//! is still in flight as lost, so that `expected == received + lost` always holds after it.
//!
//! The ledger is pure (no I/O, no clock): bots are indices `0..bots`, and bot `i` lives in
//! room `i / bots_per_room` at member slot `i % bots_per_room`.

use std::collections::VecDeque;
use std::ops::Range;

use serde::Serialize;

/// Counters of the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Chat lines sent.
    pub sent: u64,
    /// Deliveries expected: one per confirmed member of the room at the time of sending,
    /// less those of rejected lines.
    pub expected: u64,
    /// Expected deliveries that arrived.
    pub received: u64,
    /// Expected deliveries that will not arrive: their receiver left, or the run ended first.
    pub lost: u64,
    /// Chat lines that arrived and were not expected where they arrived.
    pub unexpected: u64,
    /// Lines the server refused (answered with `S2C_Error` to the sender).
    pub rejected: u64,
    /// Deliveries still expected.
    pub in_flight: u64,
}

/// One line in flight.
#[derive(Clone, Copy, Debug)]
struct Entry {
    sent_at_us: u64,
    /// Receivers still owed this line (bits set in its receiver set).
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
    /// `words` bitset words per entry, in the order of `entries`.
    bits: VecDeque<u64>,
}

/// Which bot is owed which line. See the module docs.
#[derive(Debug)]
pub struct Ledger {
    bots: u32,
    bots_per_room: u32,
    /// Bitset words per room.
    words: usize,
    /// Confirmed members of room `r`: `members[r * words..][..words]`.
    members: Vec<u64>,
    member_count: Vec<u32>,
    outboxes: Vec<Outbox>,
    counts: Counts,
}

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
            member_count: vec![0; rooms],
            outboxes: (0..bots).map(|_| Outbox::default()).collect(),
            counts: Counts::default(),
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

    /// Confirmed members of `room`.
    pub fn member_count(&self, room: u32) -> u32 {
        self.member_count.get(room as usize).copied().unwrap_or(0)
    }

    /// Whether `bot` is a confirmed member of its room.
    pub fn is_member(&self, bot: u32) -> bool {
        bot < self.bots && {
            let (word, mask) = self.slot(bot);
            self.members[self.room_of(bot) as usize * self.words + word] & mask != 0
        }
    }

    /// The bitset word and mask of `bot`'s member slot.
    fn slot(&self, bot: u32) -> (usize, u64) {
        let slot = (bot % self.bots_per_room) as usize;
        (slot / 64, 1u64 << (slot % 64))
    }

    /// `bot`'s join of its room is confirmed: lines sent from now on are expected at it.
    pub fn join(&mut self, bot: u32) {
        if bot >= self.bots || self.is_member(bot) {
            return;
        }
        let room = self.room_of(bot) as usize;
        let (word, mask) = self.slot(bot);
        self.members[room * self.words + word] |= mask;
        self.member_count[room] += 1;
    }

    /// `bot` left its room (it disconnected): the lines it was still owed are lost, and later
    /// lines do not expect it. Returns how many deliveries were lost.
    pub fn leave(&mut self, bot: u32) -> u64 {
        if !self.is_member(bot) {
            return 0;
        }
        let room = self.room_of(bot);
        let (word, mask) = self.slot(bot);
        self.members[room as usize * self.words + word] &= !mask;
        self.member_count[room as usize] -= 1;

        let mut lost = 0;
        for sender in self.bots_of_room(room) {
            let outbox = &mut self.outboxes[sender as usize];
            for (i, entry) in outbox.entries.iter_mut().enumerate() {
                let bits = &mut outbox.bits[i * self.words + word];
                if *bits & mask != 0 {
                    *bits &= !mask;
                    entry.remaining -= 1;
                    lost += 1;
                }
            }
            pop_done(outbox, self.words);
        }
        self.counts.lost += lost;
        self.counts.in_flight -= lost;
        lost
    }

    /// `sender` sends a line at `sent_at_us`: it is expected at every confirmed member of its
    /// room. Returns the line's sequence number, or `None` (and records nothing) when the
    /// sender is not a confirmed member itself.
    pub fn send(&mut self, sender: u32, sent_at_us: u64) -> Option<u32> {
        if !self.is_member(sender) {
            return None;
        }
        let room = self.room_of(sender) as usize;
        let receivers = self.member_count[room];
        let outbox = &mut self.outboxes[sender as usize];
        let seq = outbox.next_seq;
        outbox.next_seq = seq.wrapping_add(1);
        if outbox.entries.is_empty() {
            outbox.base = seq;
        }
        outbox.entries.push_back(Entry {
            sent_at_us,
            remaining: receivers,
        });
        let set = &self.members[room * self.words..][..self.words];
        outbox.bits.extend(set.iter().copied());
        self.counts.sent += 1;
        self.counts.expected += u64::from(receivers);
        self.counts.in_flight += u64::from(receivers);
        Some(seq)
    }

    /// Line `seq` of `sender` arrived at `receiver`. Returns its `sent_at_us` when it was
    /// expected there (and records the delivery); `None` when it was not, counted as
    /// unexpected.
    pub fn receive(&mut self, receiver: u32, sender: u32, seq: u32) -> Option<u64> {
        let found = self.take(receiver, sender, seq);
        match found {
            Some(_) => {
                self.counts.received += 1;
                self.counts.in_flight -= 1;
            }
            None => self.counts.unexpected += 1,
        }
        found
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
        let bits = &mut outbox.bits[index * words + word];
        if *bits & mask == 0 {
            return None;
        }
        *bits &= !mask;
        let entry = &mut outbox.entries[index];
        entry.remaining -= 1;
        let sent_at_us = entry.sent_at_us;
        pop_done(outbox, words);
        Some(sent_at_us)
    }

    /// The server refused a line of `sender`. Lines of one sender are handled in order and the
    /// sender gets its own lines back, so the refused one is the oldest that the sender itself
    /// has not had yet. It is no longer expected anywhere. Returns whether one was found.
    pub fn reject_oldest(&mut self, sender: u32) -> bool {
        if sender >= self.bots {
            return false;
        }
        let (word, mask) = self.slot(sender);
        let words = self.words;
        let outbox = &mut self.outboxes[sender as usize];
        let Some(index) =
            (0..outbox.entries.len()).find(|i| outbox.bits[i * words + word] & mask != 0)
        else {
            return false;
        };
        let entry = &mut outbox.entries[index];
        let owed = u64::from(entry.remaining);
        entry.remaining = 0;
        outbox
            .bits
            .range_mut(index * words..(index + 1) * words)
            .for_each(|w| *w = 0);
        pop_done(outbox, words);
        self.counts.rejected += 1;
        self.counts.expected -= owed;
        self.counts.in_flight -= owed;
        true
    }

    /// The run is over: every delivery still in flight is lost. Returns how many.
    pub fn finish(&mut self) -> u64 {
        let lost = self.counts.in_flight;
        for outbox in &mut self.outboxes {
            outbox.entries.clear();
            outbox.bits.clear();
            outbox.base = outbox.next_seq;
        }
        self.counts.lost += lost;
        self.counts.in_flight = 0;
        lost
    }
}

/// Drops the lines at the front that nobody is owed any more.
fn pop_done(outbox: &mut Outbox, words: usize) {
    while outbox.entries.front().is_some_and(|e| e.remaining == 0) {
        outbox.entries.pop_front();
        outbox.bits.drain(..words);
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
}
