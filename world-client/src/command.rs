//! What a person types: a line of chat, or a `/command`.
//!
//! [`parse`] is pure; [`HELP`] is the one list of commands, which `/help` prints and the parser
//! follows.

/// One line of input, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Plain text: a chat line in the current room.
    Say(String),
    /// `/guest NAME`: log in as a guest.
    Guest(String),
    /// `/register NAME`: create an account (the password is asked next).
    Register(String),
    /// `/login NAME`: log in to an account (the password is asked next).
    Login(String),
    /// `/resume`: log in with the token saved for this server.
    Resume,
    /// `/logout`: end the login and forget the saved token.
    Logout,
    /// `/rooms`: list the rooms that have members.
    Rooms,
    /// `/join ROOM`.
    Join(String),
    /// `/leave [ROOM]`: the current room when none is named.
    Leave(Option<String>),
    /// `/room NAME`: show that room's tab (`status` for the status tab).
    Room(String),
    /// `/w NAME TEXT`: a whisper.
    Whisper {
        /// Who it is for.
        to: String,
        /// What it says.
        text: String,
    },
    /// `/connect`: connect again now.
    Connect,
    /// `/clear`: empty the current tab.
    Clear,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// Every command with its arguments and what it does, in the order `/help` lists them.
pub const HELP: &[(&str, &str)] = &[
    ("/guest NAME", "log in as a guest named NAME"),
    (
        "/register NAME",
        "create the account NAME (asks for a password, twice) and log in",
    ),
    (
        "/login NAME",
        "log in to the account NAME (asks for its password)",
    ),
    (
        "/resume",
        "log in with the token saved at the last login to this server",
    ),
    ("/logout", "log out and forget the saved token"),
    ("/rooms", "list the rooms that have members"),
    ("/join ROOM", "join ROOM (created if nobody is in it)"),
    ("/leave [ROOM]", "leave ROOM, or the current room"),
    (
        "/room NAME",
        "show the tab of room NAME (\"status\": the status tab)",
    ),
    ("/w NAME TEXT", "whisper TEXT to NAME (also /msg)"),
    ("/connect", "connect again now"),
    ("/clear", "empty the current tab"),
    ("/help", "this list"),
    ("/quit", "leave the client (also Ctrl-C)"),
];

/// The keys, as `/help` lists them after the commands.
pub const KEYS: &[(&str, &str)] = &[
    (
        "Enter",
        "send the line (text without / is said in the current room; //x says /x)",
    ),
    ("Tab, Ctrl-N / Shift-Tab, Ctrl-P", "next / previous tab"),
    (
        "PageUp / PageDown",
        "scroll the chat; End on an empty line goes back to the bottom",
    ),
    ("Up / Down", "earlier lines typed"),
    ("Esc", "cancel a password prompt, clear the message line"),
    ("Ctrl-C", "quit"),
];

/// Why a line is not a command: what to type instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// A command this client does not have.
    #[error("unknown command {0}: /help lists the commands")]
    Unknown(String),
    /// A known command with the wrong arguments.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// Understands one line of input; `None` for a line that is empty or only spaces.
pub fn parse(line: &str) -> Option<Result<Command, UsageError>> {
    if line.trim().is_empty() {
        return None;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Some(Ok(Command::Say(line.to_string())));
    };
    // "//text" says "/text".
    if rest.starts_with('/') {
        return Some(Ok(Command::Say(rest.to_string())));
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    let one = |usage: &'static str| match words.as_slice() {
        [word] => Ok(word.to_string()),
        _ => Err(UsageError::Usage(usage)),
    };
    let none = |command: Command, usage: &'static str| {
        if words.is_empty() {
            Ok(command)
        } else {
            Err(UsageError::Usage(usage))
        }
    };
    let command = match name.to_ascii_lowercase().as_str() {
        "guest" => one("/guest NAME").map(Command::Guest),
        "register" => one("/register NAME").map(Command::Register),
        "login" => one("/login NAME").map(Command::Login),
        "resume" => none(Command::Resume, "/resume"),
        "logout" => none(Command::Logout, "/logout"),
        "rooms" | "list" => none(Command::Rooms, "/rooms"),
        "join" => one("/join ROOM").map(|room| Command::Join(strip_hash(room))),
        "leave" | "part" => match words.as_slice() {
            [] => Ok(Command::Leave(None)),
            [room] => Ok(Command::Leave(Some(strip_hash(room.to_string())))),
            _ => Err(UsageError::Usage("/leave [ROOM]")),
        },
        "room" => one("/room NAME").map(|room| Command::Room(strip_hash(room))),
        "w" | "whisper" | "msg" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Ok(Command::Whisper {
                to: to.to_string(),
                text: text.trim_start().to_string(),
            }),
            _ => Err(UsageError::Usage("/w NAME TEXT")),
        },
        "connect" | "reconnect" => none(Command::Connect, "/connect"),
        "clear" => none(Command::Clear, "/clear"),
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        _ => Err(UsageError::Unknown(format!("/{name}"))),
    };
    Some(command)
}

/// `#lobby` names the room `lobby`: room names never start with `#` on the wire.
fn strip_hash(room: String) -> String {
    match room.strip_prefix('#') {
        Some(bare) if !bare.is_empty() => bare.to_string(),
        _ => room,
    }
}

/// Whether `name` is a username the protocol allows: 3-32 characters of `[A-Za-z0-9_.-]`.
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    fn err(line: &str) -> String {
        parse(line).unwrap().unwrap_err().to_string()
    }

    #[test]
    fn plain_text_is_said_and_a_double_slash_escapes() {
        assert_eq!(ok("hello there"), Command::Say("hello there".into()));
        assert_eq!(ok("  indented"), Command::Say("  indented".into()));
        assert_eq!(ok("//shrug"), Command::Say("/shrug".into()));
        assert_eq!(parse("   "), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn every_command_parses_with_its_arguments() {
        assert_eq!(ok("/guest ann"), Command::Guest("ann".into()));
        assert_eq!(ok("/register bob"), Command::Register("bob".into()));
        assert_eq!(ok("/LOGIN bob"), Command::Login("bob".into()));
        assert_eq!(ok("/resume"), Command::Resume);
        assert_eq!(ok("/logout"), Command::Logout);
        assert_eq!(ok("/rooms"), Command::Rooms);
        assert_eq!(ok("/join lobby"), Command::Join("lobby".into()));
        assert_eq!(ok("/join #lobby"), Command::Join("lobby".into()));
        assert_eq!(ok("/leave"), Command::Leave(None));
        assert_eq!(ok("/leave dev"), Command::Leave(Some("dev".into())));
        assert_eq!(ok("/room #dev"), Command::Room("dev".into()));
        assert_eq!(
            ok("/w bob  see you at  noon"),
            Command::Whisper {
                to: "bob".into(),
                text: "see you at  noon".into()
            }
        );
        assert_eq!(
            ok("/msg bob hi"),
            Command::Whisper {
                to: "bob".into(),
                text: "hi".into()
            }
        );
        assert_eq!(ok("/connect"), Command::Connect);
        assert_eq!(ok("/clear"), Command::Clear);
        assert_eq!(ok("/help"), Command::Help);
        assert_eq!(ok("/quit"), Command::Quit);
        assert_eq!(ok("/exit"), Command::Quit);
    }

    #[test]
    fn wrong_arguments_say_the_usage_and_unknown_commands_point_to_help() {
        assert_eq!(err("/join"), "usage: /join ROOM");
        assert_eq!(err("/join a b"), "usage: /join ROOM");
        assert_eq!(err("/guest"), "usage: /guest NAME");
        assert_eq!(err("/w bob"), "usage: /w NAME TEXT");
        assert_eq!(err("/w"), "usage: /w NAME TEXT");
        assert_eq!(err("/logout now"), "usage: /logout");
        assert_eq!(err("/leave a b"), "usage: /leave [ROOM]");
        assert_eq!(
            err("/dance"),
            "unknown command /dance: /help lists the commands"
        );
        assert_eq!(err("/"), "unknown command /: /help lists the commands");
    }

    #[test]
    fn help_lists_every_command_the_parser_knows() {
        for (usage, _) in HELP {
            let name = usage.split_whitespace().next().unwrap();
            let parsed = parse(name).unwrap();
            assert!(
                !matches!(parsed, Err(UsageError::Unknown(_))),
                "{name} is listed in HELP but not parsed"
            );
        }
    }

    #[test]
    fn usernames_follow_the_protocol() {
        assert!(valid_username("ann"));
        assert!(valid_username("a.b-c_9"));
        assert!(!valid_username("ab"));
        assert!(!valid_username("a b c"));
        assert!(!valid_username(&"x".repeat(33)));
        assert!(!valid_username("žofie"));
    }
}
