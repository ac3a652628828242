//! Drawing an [`App`] to a ratatui [`Frame`]: nothing here changes the app.
//!
//! ```text
//!  status  #lobby  #dev (3)                                  tabs, unread counts
//! ┌ #lobby ─────────────────────────────────┐┌ members 2/100 ┐
//! │12:00:01 <ann> hi                         ││ann            │
//! │12:00:02 --> bob joined                   ││bob            │
//! └──────────────────────────────────────────┘└───────────────┘
//!  Join failed: the room is full (server: ...)                   the latest error
//!  tcp://127.0.0.1:7000 | tcp | ann (guest) | online | 1 ms      the status line
//! > hello_                                                       the line being typed
//! ```

use chrono::{DateTime, Local};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Paragraph, Tabs};
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use crate::app::{App, Auth, Line, LineKind, Link};

/// Width of the member list, borders included.
const MEMBERS_WIDTH: u16 = 24;

/// What the drawing found that the app needs for scrolling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Rows of chat visible: one page.
    pub page: usize,
    /// How far up the current tab can scroll.
    pub max_scroll: usize,
}

/// Draws `app` on the whole frame.
pub fn draw(frame: &mut Frame, app: &App) -> View {
    let [tabs_area, body, notice_area, status_area, input_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_tabs(frame, app, tabs_area);
    let tab = app.current_tab();
    let (chat_area, members_area) = if tab.room.is_some() && body.width > MEMBERS_WIDTH * 2 {
        let [chat, members] =
            Layout::horizontal([Constraint::Min(10), Constraint::Length(MEMBERS_WIDTH)])
                .areas(body);
        (chat, Some(members))
    } else {
        (body, None)
    };
    let view = draw_chat(frame, app, chat_area);
    if let Some(area) = members_area {
        draw_members(frame, app, area);
    }
    if let Some(notice) = &app.notice {
        let style = if notice.error {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Yellow)
        };
        frame.render_widget(
            Paragraph::new(Span::styled(clean(&notice.text), style)),
            notice_area,
        );
    }
    frame.render_widget(
        Paragraph::new(status_line(app)).style(Style::new().fg(Color::Black).bg(Color::Cyan)),
        status_area,
    );
    draw_input(frame, app, input_area);
    view
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let titles: Vec<TextLine> = app
        .tabs
        .iter()
        .map(|tab| {
            let mut title = tab.title();
            if tab.unread > 0 {
                title.push_str(&format!(" ({})", tab.unread));
            }
            let style = if tab.room.is_some() && !tab.joined {
                Style::new().add_modifier(Modifier::DIM)
            } else if tab.unread > 0 {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            TextLine::from(Span::styled(title, style))
        })
        .collect();
    let tabs = Tabs::new(titles)
        .select(app.current)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .divider(" ");
    frame.render_widget(tabs, area);
}

fn draw_chat(frame: &mut Frame, app: &App, area: Rect) -> View {
    let tab = app.current_tab();
    let mut block = Block::bordered().title(format!(" {} ", tab.title()));
    if tab.room.is_some() && !tab.joined {
        block = block.title_bottom(" not in this room now ");
    }
    let inner = block.inner(area);
    let width = usize::from(inner.width.max(1));
    let height = usize::from(inner.height);
    let rows: Vec<TextLine<'static>> = tab
        .lines
        .iter()
        .flat_map(|line| wrap(line_spans(line), width))
        .collect();
    let max_scroll = rows.len().saturating_sub(height);
    let scroll = tab.scroll.min(max_scroll);
    if scroll > 0 {
        block = block.title_bottom(format!(" {scroll} more below: PageDown "));
    }
    let end = rows.len() - scroll;
    let start = end.saturating_sub(height);
    let visible: Vec<TextLine<'static>> = rows[start..end].to_vec();
    frame.render_widget(Paragraph::new(visible).block(block), area);
    View {
        page: height.saturating_sub(1).max(1),
        max_scroll,
    }
}

fn draw_members(frame: &mut Frame, app: &App, area: Rect) {
    let tab = app.current_tab();
    let me = app.username();
    let title = if tab.capacity > 0 {
        format!(" members {}/{} ", tab.members.len(), tab.capacity)
    } else {
        format!(" members {} ", tab.members.len())
    };
    let names: Vec<TextLine> = tab
        .members
        .iter()
        .map(|name| {
            let style = if Some(name.as_str()) == me {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            TextLine::from(Span::styled(clean(name), style))
        })
        .collect();
    frame.render_widget(
        Paragraph::new(names).block(Block::bordered().title(title)),
        area,
    );
}

/// The status line: server, transport, login, connection, round trip.
pub fn status_line(app: &App) -> String {
    let login = match &app.auth {
        Auth::LoggedOut => "not logged in".to_string(),
        Auth::Pending(what) => format!("{what}..."),
        Auth::LoggedIn {
            username,
            guest: true,
        } => format!("{username} (guest)"),
        Auth::LoggedIn { username, .. } => username.clone(),
    };
    let link = match &app.link {
        Link::Connecting { attempt: 1 } => "connecting".to_string(),
        Link::Connecting { attempt } => format!("connecting again (attempt {attempt})"),
        Link::Online => "online".to_string(),
        Link::Waiting { delay, attempt, .. } => format!(
            "disconnected: reconnecting in {:.1} s (attempt {attempt})",
            delay.as_secs_f64()
        ),
        Link::Offline(why) => format!("offline: {why}"),
    };
    let mut parts = vec![
        app.server.to_string(),
        app.transport.label().to_string(),
        login,
        link,
    ];
    if let Some(rtt) = app.rtt {
        parts.push(format!("ping {} ms", rtt.as_millis()));
    }
    format!(" {}", clean(&parts.join(" | ")))
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let width = usize::from(area.width.max(1));
    let (prefix, text, cursor, hint) = match &app.prompt {
        Some(prompt) => {
            let masked = "*".repeat(prompt.secret.chars().count());
            let cursor = masked.len();
            (clean(&prompt.purpose.label()), masked, cursor, None)
        }
        None => {
            let hint = (app.input.text.is_empty() && app.auth == Auth::LoggedOut).then_some(
                "/guest NAME, /login NAME or /register NAME to log in; /help lists the commands",
            );
            let before: String = app.input.text.chars().take(app.input.cursor).collect();
            let cursor = text_width(&clean(&before));
            ("> ".to_string(), clean(&app.input.text), cursor, hint)
        }
    };
    let prefix_width = text_width(&prefix);
    let room = width.saturating_sub(prefix_width + 1).max(1);
    // Scroll the line sideways so that the cursor stays in view.
    let skip = cursor.saturating_sub(room);
    let mut shown = String::new();
    let mut skipped = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if skipped < skip {
            skipped += w;
            continue;
        }
        shown.push(c);
    }
    let mut spans = vec![Span::styled(
        prefix,
        Style::new().add_modifier(Modifier::BOLD),
    )];
    match hint {
        Some(hint) => spans.push(Span::styled(hint, Style::new().add_modifier(Modifier::DIM))),
        None => spans.push(Span::raw(shown)),
    }
    frame.render_widget(Paragraph::new(TextLine::from(spans)), area);
    let x = area.x + (prefix_width + cursor - skipped.min(cursor)).min(width - 1) as u16;
    frame.set_cursor_position(Position::new(x, area.y));
}

/// The spans of one line of a tab, before wrapping.
pub fn line_spans(line: &Line) -> Vec<Span<'static>> {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let time = |at_us: u64, with_date: bool| {
        let format = if with_date {
            "%Y-%m-%d %H:%M "
        } else {
            "%H:%M:%S "
        };
        match DateTime::from_timestamp_micros(at_us as i64) {
            Some(t) if at_us > 0 => t.with_timezone(&Local).format(format).to_string(),
            _ => String::new(),
        }
    };
    match &line.kind {
        LineKind::Chat {
            from,
            content,
            history,
            mine,
        } => {
            let name_style = if *mine {
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            };
            if *history {
                vec![
                    Span::styled("[history] ", dim),
                    Span::styled(time(line.at_us, true), dim),
                    Span::styled(
                        format!("<{}> ", clean(from)),
                        name_style.add_modifier(Modifier::DIM),
                    ),
                    Span::styled(clean(content), dim),
                ]
            } else {
                vec![
                    Span::styled(time(line.at_us, false), dim),
                    Span::styled(format!("<{}> ", clean(from)), name_style),
                    Span::raw(clean(content)),
                ]
            }
        }
        LineKind::Presence { username, joined } => {
            let text = if *joined {
                format!("--> {} joined", clean(username))
            } else {
                format!("<-- {} left", clean(username))
            };
            vec![
                Span::styled(time(line.at_us, false), dim),
                Span::styled(text, Style::new().fg(Color::DarkGray)),
            ]
        }
        LineKind::Whisper {
            from,
            to,
            content,
            mine,
        } => {
            let style = Style::new().fg(Color::Magenta);
            let who = if *mine {
                format!("[whisper to {}] ", clean(to))
            } else {
                format!("[whisper from {}] ", clean(from))
            };
            vec![
                Span::styled(time(line.at_us, false), dim),
                Span::styled(who, style.add_modifier(Modifier::BOLD)),
                Span::styled(clean(content), style),
            ]
        }
        LineKind::Info(text) => vec![
            Span::styled(time(line.at_us, false), dim),
            Span::styled(format!("* {}", clean(text)), Style::new().fg(Color::Cyan)),
        ],
        LineKind::Error(text) => vec![
            Span::styled(time(line.at_us, false), dim),
            Span::styled(format!("! {}", clean(text)), Style::new().fg(Color::Red)),
        ],
    }
}

/// Breaks `spans` into rows of at most `width` columns, between words where it can; the
/// rows after the first are indented by the width of the first span (the time).
pub fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<TextLine<'static>> {
    let width = width.max(1);
    let indent = spans
        .first()
        .map(|s| text_width(&s.content))
        .filter(|&w| w < width / 2)
        .unwrap_or(0);
    let cells: Vec<(char, Style)> = spans
        .iter()
        .flat_map(|s| s.content.chars().map(move |c| (c, s.style)))
        .collect();
    let mut rows = Vec::new();
    let mut start = 0;
    loop {
        let first = rows.is_empty();
        let (room, lead) = if first {
            (width, indent)
        } else {
            (width - indent, 0)
        };
        let mut used = 0;
        let mut end = start;
        let mut space = None;
        while end < cells.len() {
            let w = cells[end].0.width().unwrap_or(0);
            if used + w > room && end > start {
                break;
            }
            if cells[end].0 == ' ' && end >= start + lead {
                space = Some(end);
            }
            used += w;
            end += 1;
        }
        if end < cells.len() {
            if let Some(space) = space {
                end = space + 1;
            }
        }
        let mut row: Vec<Span<'static>> = Vec::new();
        for &(c, style) in &cells[start..end] {
            match row.last_mut() {
                Some(span) if span.style == style => span.content.to_mut().push(c),
                _ => row.push(Span::styled(c.to_string(), style)),
            }
        }
        if !first && indent > 0 {
            row.insert(0, Span::raw(" ".repeat(indent)));
        }
        rows.push(TextLine::from(row));
        start = end;
        if start >= cells.len() {
            return rows;
        }
    }
}

/// `text` safe to print: control characters (escape sequences among them) become `?`.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

fn text_width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Action, StartLogin};
    use crate::url::ServerUrl;
    use protocol::world::{
        S2cAuthResult, S2cChat, S2cError, S2cRoomJoined, S2cRoomPresence, S2cWhisper,
    };
    use protocol::{ErrorCode, S2cMessage};
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use std::time::Instant;

    /// Draws `app` on a `width` × `height` screen and returns its rows as text.
    fn screen(app: &App, width: u16, height: u16) -> (Vec<String>, View) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let mut view = None;
        terminal
            .draw(|frame| view = Some(draw(frame, app)))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let rows = (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect();
        (rows, view.unwrap())
    }

    fn contains(rows: &[String], text: &str) -> bool {
        rows.iter().any(|row| row.contains(text))
    }

    fn type_line(app: &mut App, text: &str) -> Vec<Action> {
        for c in text.chars() {
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
    }

    /// ann, a guest, in `lobby` with bob: a history line, a presence, a chat, a whisper.
    fn busy_app() -> App {
        let now = Instant::now();
        let url = ServerUrl::parse("tcp://127.0.0.1:7000").unwrap();
        let (mut app, _) = App::new(url, StartLogin::Guest("ann".into()), None);
        app.on_connected(now);
        app.on_server(
            S2cMessage::S2cAuthResult(S2cAuthResult {
                username: "ann".into(),
                user_id: 0,
                token: String::new(),
                guest: true,
                ..Default::default()
            }),
            now,
        );
        type_line(&mut app, "/join lobby");
        app.on_server(
            S2cMessage::S2cRoomJoined(S2cRoomJoined {
                room: "lobby".into(),
                members: vec!["ann".into(), "bob".into()],
                capacity: 100,
            }),
            now,
        );
        let chat = |content: &str, history: bool| {
            S2cMessage::S2cChat(S2cChat {
                room: "lobby".into(),
                from: "bob".into(),
                content: content.into(),
                sent_at_us: 0,
                server_time_us: 1_700_000_000_000_000 + u64::from(!history),
                history,
            })
        };
        app.on_server(chat("said before you came", true), now);
        app.on_server(
            S2cMessage::S2cRoomPresence(S2cRoomPresence {
                room: "lobby".into(),
                username: "cid".into(),
                joined: true,
            }),
            now,
        );
        app.on_server(chat("hi ann", false), now);
        app.on_server(
            S2cMessage::S2cWhisper(S2cWhisper {
                from: "bob".into(),
                to: "ann".into(),
                content: "psst".into(),
                sent_at_us: 0,
            }),
            now,
        );
        app
    }

    #[test]
    fn the_screen_shows_tabs_chat_history_presence_members_and_status() {
        let app = busy_app();
        let (rows, _) = screen(&app, 100, 20);
        let all = rows.join("\n");
        assert!(
            rows[0].contains("status") && rows[0].contains("#lobby"),
            "{all}"
        );
        assert!(contains(&rows, "[history]"), "{all}");
        assert!(contains(&rows, "<bob> said before you came"), "{all}");
        assert!(contains(&rows, "--> cid joined"), "{all}");
        assert!(contains(&rows, "<bob> hi ann"), "{all}");
        assert!(contains(&rows, "[whisper from bob] psst"), "{all}");
        assert!(contains(&rows, "members 3/100"), "{all}");
        for name in ["ann", "bob", "cid"] {
            assert!(
                rows.iter().any(|r| r.contains(&format!("│{name} "))),
                "{name}: {all}"
            );
        }
        assert!(
            rows[18].contains("tcp://127.0.0.1:7000 | tcp | ann (guest) | online"),
            "{all}"
        );
        assert!(rows[19].starts_with("> "), "{all}");
    }

    #[test]
    fn an_error_is_shown_in_words_above_the_status_line() {
        let mut app = busy_app();
        app.on_server(
            S2cMessage::S2cError(S2cError {
                code: ErrorCode::RoomFull as i32,
                reason: "room \"dev\" is full".into(),
                request_id: 2030,
                retry_after_ms: 0,
            }),
            Instant::now(),
        );
        let (rows, _) = screen(&app, 100, 20);
        assert!(
            rows[17].contains("Join failed: the room is full (server: room \"dev\" is full)"),
            "{}",
            rows.join("\n")
        );
    }

    #[test]
    fn a_password_prompt_shows_stars_only() {
        let mut app = busy_app();
        type_line(&mut app, "/logout");
        type_line(&mut app, "/login carol");
        for c in "hunter22".chars() {
            app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let (rows, _) = screen(&app, 100, 20);
        let all = rows.join("\n");
        assert!(
            rows[19].starts_with("password for carol: ********"),
            "{all}"
        );
        assert!(!all.contains("hunter22"), "{all}");
    }

    #[test]
    fn the_status_line_says_when_the_client_connects_again() {
        let mut app = busy_app();
        app.on_closed(
            crate::words::Closure::Session(net::DisconnectReason::PeerClosed),
            Instant::now(),
        );
        let (rows, _) = screen(&app, 120, 20);
        let all = rows.join("\n");
        assert!(
            rows[18].contains("not logged in | disconnected: reconnecting in 0.5 s (attempt 1)"),
            "{all}"
        );
        assert!(contains(&rows, "not in this room now"), "{all}");
        assert!(
            rows[17].contains("Disconnected: the server closed the connection"),
            "{all}"
        );
    }

    #[test]
    fn scrolling_shows_older_lines_and_says_how_many_are_below() {
        let mut app = busy_app();
        for i in 0..40 {
            type_line(&mut app, &format!("/room lobby{i}"));
        }
        let (rows, view) = screen(&app, 100, 20);
        assert!(view.max_scroll > 0);
        assert!(!contains(&rows, "<bob> hi ann"));
        app.set_view(view.page, view.max_scroll);
        for _ in 0..20 {
            app.on_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
        }
        let (rows, _) = screen(&app, 100, 20);
        let all = rows.join("\n");
        assert!(contains(&rows, "<bob> hi ann"), "{all}");
        assert!(contains(&rows, "more below: PageDown"), "{all}");
    }

    #[test]
    fn long_lines_wrap_between_words_under_the_time() {
        let spans = vec![
            Span::raw("12:00:00 "),
            Span::raw("<bob> "),
            Span::raw("one two three four five"),
        ];
        let rows: Vec<String> = wrap(spans, 24)
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect();
        assert_eq!(
            rows,
            ["12:00:00 <bob> one two ", "         three four five"]
        );
        let rows = wrap(vec![Span::raw("x".repeat(25))], 10);
        assert_eq!(rows.len(), 3);
        assert_eq!(wrap(Vec::new(), 10).len(), 1);
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("a\u{1b}[2Jb\tc"), "a?[2Jb c");
    }
}
