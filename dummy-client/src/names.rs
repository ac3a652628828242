//! Names and chat content: usernames and room names, and the chat line's parsable
//! sequence-number prefix.
//!
//! Rooms are always unique to one run: bot `index` (from 0) is in room
//! `{room_prefix}{run_id}-{index / bots_per_room}`. Usernames follow one of two
//! [`NameScheme`]s:
//!
//! - [`NameScheme::PerRun`] (guests): `{name_prefix}{index:05}.{run_id}`, so that two runs
//!   against one server stay apart: without the run id the second run's logins would take
//!   over (REPLACE) the first run's sessions.
//! - [`NameScheme::Accounts`] (register, login, resume): `{name_prefix}{index + 1:05}`
//!   (`bot-00001`, `bot-00002`, ...), the same in every run, so that the accounts a
//!   `register` run creates are the ones a later `login` or `resume` run logs in to. Two such
//!   runs at once against one server need different name prefixes.
//!
//! The run id is four random characters of `[a-z0-9]`.

use std::fmt::Write as _;

/// Characters of a run id.
const RUN_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Length of a run id.
pub const RUN_ID_LEN: usize = 4;

/// Longest username the server accepts (PROTOCOL.md, session rule 3).
pub const MAX_USERNAME_LEN: usize = 32;

/// Longest room name the server accepts (PROTOCOL.md, session rule 3).
pub const MAX_ROOM_LEN: usize = 64;

/// A fresh random run id of [`RUN_ID_LEN`] characters of `[a-z0-9]`.
pub fn new_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..RUN_ID_LEN)
        .map(|_| RUN_ID_ALPHABET[rng.random_range(0..RUN_ID_ALPHABET.len())] as char)
        .collect()
}

/// How usernames are made; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameScheme {
    /// `{name_prefix}{index:05}.{run_id}`: unique per run, for guests.
    PerRun,
    /// `{name_prefix}{index + 1:05}`: the same in every run, for accounts.
    Accounts,
}

impl NameScheme {
    /// The scheme of an auth mode: accounts need names that outlive the run.
    pub fn for_auth(mode: config::client::AuthMode) -> Self {
        if mode.uses_accounts() {
            NameScheme::Accounts
        } else {
            NameScheme::PerRun
        }
    }
}

/// Builds and parses the names of one run.
#[derive(Clone, Debug)]
pub struct Names {
    name_prefix: String,
    room_prefix: String,
    run_id: String,
    bots_per_room: usize,
    scheme: NameScheme,
}

impl Names {
    /// Names for bots of run `run_id` with usernames unique to the run
    /// ([`NameScheme::PerRun`]); `bots_per_room` is at least 1.
    pub fn new(name_prefix: &str, room_prefix: &str, run_id: &str, bots_per_room: usize) -> Self {
        Names {
            name_prefix: name_prefix.to_owned(),
            room_prefix: room_prefix.to_owned(),
            run_id: run_id.to_owned(),
            bots_per_room: bots_per_room.max(1),
            scheme: NameScheme::PerRun,
        }
    }

    /// The same names with usernames made by `scheme`.
    pub fn with_scheme(mut self, scheme: NameScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The scheme of the usernames.
    pub fn scheme(&self) -> NameScheme {
        self.scheme
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The username of bot `index` (from 0): `{name_prefix}{index:05}.{run_id}` per run,
    /// `{name_prefix}{index + 1:05}` for accounts.
    pub fn username(&self, index: u32) -> String {
        match self.scheme {
            NameScheme::PerRun => format!("{}{index:05}.{}", self.name_prefix, self.run_id),
            NameScheme::Accounts => {
                format!("{}{:05}", self.name_prefix, u64::from(index) + 1)
            }
        }
    }

    /// The room of bot `index`: `{room_prefix}{run_id}-{index / bots_per_room}`.
    pub fn room(&self, index: u32) -> String {
        format!(
            "{}{}-{}",
            self.room_prefix,
            self.run_id,
            index as usize / self.bots_per_room
        )
    }

    /// The bot index a username of this run names, `None` for any other name. It only parses:
    /// the caller still compares the name with the bot's own, since `00042` and `42` parse alike.
    pub fn bot_index(&self, username: &str) -> Option<u32> {
        let rest = username.strip_prefix(self.name_prefix.as_str())?;
        let digits = match self.scheme {
            NameScheme::PerRun => {
                let (digits, run_id) = rest.split_once('.')?;
                if run_id != self.run_id {
                    return None;
                }
                digits
            }
            NameScheme::Accounts => rest,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u32 = digits.parse().ok()?;
        match self.scheme {
            NameScheme::PerRun => Some(number),
            NameScheme::Accounts => number.checked_sub(1),
        }
    }

    /// Checks that every name of a run with `bots` bots obeys the server's rules, naming the
    /// config key at fault when one would not.
    pub fn check(&self, bots: u32) -> Result<(), NameError> {
        let last = bots.saturating_sub(1);
        let username = self.username(last);
        if username.len() > MAX_USERNAME_LEN {
            return Err(NameError {
                key: "bots.name_prefix",
                value: self.name_prefix.clone(),
                rule: format!(
                    "short enough for usernames of at most {MAX_USERNAME_LEN} chars \
                     (\"{username}\" has {})",
                    username.len()
                ),
            });
        }
        let room = self.room(last);
        if room.len() > MAX_ROOM_LEN {
            return Err(NameError {
                key: "bots.room_prefix",
                value: self.room_prefix.clone(),
                rule: format!(
                    "short enough for room names of at most {MAX_ROOM_LEN} chars \
                     (\"{room}\" has {})",
                    room.len()
                ),
            });
        }
        Ok(())
    }
}

/// A prefix that makes names the server would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key} must be {rule} (got {value:?})")]
pub struct NameError {
    /// The config key at fault.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// The rule it breaks.
    pub rule: String,
}

/// Writes the content of chat line `seq` into `out` (cleared first): the decimal sequence
/// number, a space, then `.` up to `size` bytes. A `size` too small for the prefix gives just
/// the prefix, so the line stays parsable.
pub fn write_content(out: &mut String, seq: u32, size: usize) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "{seq} ");
    let pad = size.saturating_sub(out.len());
    out.extend(std::iter::repeat_n('.', pad));
}

/// The sequence number at the start of a chat line's content, `None` if it has none.
pub fn parse_content(content: &str) -> Option<u32> {
    let digits = content.split(' ').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("bot-", "room-", "k3f9", 20)
    }

    #[test]
    fn usernames_and_rooms_carry_the_index_and_the_run_id() {
        let names = names();
        assert_eq!(names.username(42), "bot-00042.k3f9");
        assert_eq!(names.username(123_456), "bot-123456.k3f9");
        assert_eq!(names.room(0), "room-k3f9-0");
        assert_eq!(names.room(19), "room-k3f9-0");
        assert_eq!(names.room(20), "room-k3f9-1");
    }

    #[test]
    fn a_username_parses_back_to_its_index_only_for_this_run() {
        let names = names();
        assert_eq!(names.bot_index("bot-00042.k3f9"), Some(42));
        assert_eq!(names.bot_index("bot-00042.zzzz"), None);
        assert_eq!(names.bot_index("xyz-00042.k3f9"), None);
        assert_eq!(names.bot_index("bot-.k3f9"), None);
        assert_eq!(names.bot_index("bot-+1.k3f9"), None);
        assert_eq!(names.bot_index("bot-00042"), None);
    }

    fn accounts() -> Names {
        names().with_scheme(NameScheme::Accounts)
    }

    #[test]
    fn account_usernames_count_from_one_without_the_run_id() {
        let names = accounts();
        assert_eq!(names.username(0), "bot-00001");
        assert_eq!(names.username(41), "bot-00042");
        assert_eq!(names.username(99_999), "bot-100000");
        // Rooms stay unique per run.
        assert_eq!(names.room(0), "room-k3f9-0");
        assert_eq!(names.room(20), "room-k3f9-1");
    }

    #[test]
    fn account_usernames_are_the_same_in_every_run() {
        let one = Names::new("bot-", "room-", "aaaa", 20).with_scheme(NameScheme::Accounts);
        let two = Names::new("bot-", "room-", "zzzz", 20).with_scheme(NameScheme::Accounts);
        assert_eq!(one.username(7), two.username(7));
        assert_ne!(one.room(7), two.room(7));
        let guest_one = Names::new("bot-", "room-", "aaaa", 20);
        let guest_two = Names::new("bot-", "room-", "zzzz", 20);
        assert_ne!(guest_one.username(7), guest_two.username(7));
    }

    #[test]
    fn each_auth_mode_picks_its_name_scheme() {
        use config::client::AuthMode;
        assert_eq!(NameScheme::for_auth(AuthMode::Guest), NameScheme::PerRun);
        for mode in [AuthMode::Register, AuthMode::Login, AuthMode::Resume] {
            assert_eq!(NameScheme::for_auth(mode), NameScheme::Accounts, "{mode}");
        }
    }

    #[test]
    fn an_account_username_parses_back_to_its_index() {
        let names = accounts();
        assert_eq!(names.bot_index("bot-00001"), Some(0));
        assert_eq!(names.bot_index("bot-00042"), Some(41));
        assert_eq!(names.bot_index("bot-00000"), None);
        assert_eq!(names.bot_index("bot-00042.k3f9"), None);
        assert_eq!(names.bot_index("xyz-00042"), None);
        assert_eq!(names.bot_index("bot-"), None);
        for index in [0, 1, 999, 99_999] {
            assert_eq!(names.bot_index(&names.username(index)), Some(index));
        }
    }

    #[test]
    fn run_ids_are_short_and_plain() {
        let id = new_run_id();
        assert_eq!(id.len(), RUN_ID_LEN);
        assert!(id.bytes().all(|b| RUN_ID_ALPHABET.contains(&b)));
    }

    #[test]
    fn a_name_prefix_too_long_for_the_server_is_refused_naming_the_key() {
        let long = Names::new("a-very-long-bot-name-prefix-", "room-", "k3f9", 20);
        let error = long.check(1000).unwrap_err();
        assert_eq!(error.key, "bots.name_prefix");
        assert!(names().check(100_000).is_ok());
        assert!(accounts().check(100_000).is_ok());
    }

    #[test]
    fn content_is_padded_to_the_message_size_and_parses_back() {
        let mut content = String::new();
        write_content(&mut content, 1234, 64);
        assert_eq!(content.len(), 64);
        assert!(content.starts_with("1234 ...."));
        assert_eq!(parse_content(&content), Some(1234));

        write_content(&mut content, 987_654, 3);
        assert_eq!(content, "987654 ");
        assert_eq!(parse_content(&content), Some(987_654));
    }

    #[test]
    fn content_without_a_sequence_number_does_not_parse() {
        assert_eq!(parse_content(""), None);
        assert_eq!(parse_content("hello 12"), None);
        assert_eq!(parse_content(" 12"), None);
        assert_eq!(parse_content("99999999999 x"), None);
    }
}
