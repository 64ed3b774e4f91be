//! Drawing the screen from an [`App`]: a title, the room's log, the input line and the status
//! line.

use crate::app::{App, Connection, Delivery, Entry, HELP};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

/// How many of the newest entries the log lays out: enough to scroll back many screens,
/// few enough that a long session does not slow each redraw.
const MAX_DRAWN: usize = 1000;

/// Draws the whole screen; keeps the log's scroll position within what there is to see.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let [title, log, input, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    frame.render_widget(
        Paragraph::new(Line::from(vec![
            " webpubsub terminal chat ".bold().reversed(),
            Span::raw(" "),
            Span::raw(HELP).dim(),
        ])),
        title,
    );
    draw_log(frame, app, log);
    draw_input(frame, app, input);
    frame.render_widget(Paragraph::new(status_line(app)), status);
}

fn draw_log(frame: &mut Frame, app: &mut App, area: Rect) {
    let block = Block::bordered().title(" room ");
    let inner = block.inner(area);
    let first = app.entries.len().saturating_sub(MAX_DRAWN);
    let lines: Vec<Line> = app.entries[first..].iter().map(entry_line).collect();
    // Long lines wrap; the rows they take decide where the end of the log is.
    let log = Paragraph::new(lines).wrap(Wrap { trim: false });
    let end = log
        .line_count(inner.width)
        .saturating_sub(usize::from(inner.height));
    app.scroll = app.scroll.min(end);
    let top = u16::try_from(end - app.scroll).unwrap_or(u16::MAX);
    frame.render_widget(log.block(block).scroll((top, 0)), area);
}

fn entry_line(entry: &Entry) -> Line<'_> {
    match entry {
        Entry::Message {
            group,
            from,
            text,
            delivery,
        } => {
            let mut spans = vec![
                Span::raw(format!("#{group} ")).dim(),
                Span::styled(format!("{from}:"), user_style(from)),
                Span::raw(" "),
                Span::raw(text.as_str()),
            ];
            match delivery {
                Delivery::Received | Delivery::Sent => {}
                Delivery::Sending => spans.push(" (sending)".dim()),
                Delivery::Failed(why) => spans.push(format!(" ✗ not sent: {why}").red()),
            }
            Line::from(spans)
        }
        Entry::Server(text) => Line::from(vec![
            "server:".magenta().bold(),
            Span::raw(" "),
            Span::raw(text.as_str()),
        ]),
        Entry::Info(text) => Line::from(format!("* {text}")).cyan(),
        Entry::Error(text) => Line::from(format!("! {text}")).red(),
    }
}

/// A colour per user, so that a conversation is easy to follow.
fn user_style(user: &str) -> Style {
    const COLORS: [Color; 6] = [
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::LightRed,
    ];
    let hash = user
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
    Style::new()
        .fg(COLORS[hash % COLORS.len()])
        .add_modifier(Modifier::BOLD)
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let title = match &app.group {
        Some(group) => format!(" message to #{group} "),
        None => " no group: /join GROUP ".into(),
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    // Keep the end of a long line in view, with room for the cursor.
    let room = usize::from(inner.width.saturating_sub(1));
    let chars: Vec<char> = app.input.chars().collect();
    let visible: String = chars[chars.len().saturating_sub(room)..].iter().collect();
    let cursor = Line::raw(visible.as_str()).width();
    frame.render_widget(Paragraph::new(visible.as_str()).block(block), area);
    let x = inner.x + u16::try_from(cursor).unwrap_or(inner.width);
    frame.set_cursor_position(Position::new(x.min(inner.right()), inner.y));
}

fn status_line(app: &App) -> Line<'_> {
    let color = match app.connection {
        Connection::Connected | Connection::Recovered => Color::Green,
        Connection::Connecting | Connection::Recovering => Color::Yellow,
        Connection::Reconnecting | Connection::Stopped | Connection::Failed(_) => Color::Red,
    };
    let mut spans = vec![
        Span::styled(
            format!(" state: {} ", app.connection.label()),
            Style::new().fg(Color::Black).bg(color),
        ),
        Span::raw(format!(
            " user: {} ",
            app.user.as_deref().unwrap_or("(anonymous)")
        )),
        Span::raw(format!(
            "│ group: {} ",
            app.group
                .as_deref()
                .map_or("none".into(), |g| format!("#{g}"))
        )),
    ];
    if let Some(id) = &app.connection_id {
        spans.push(Span::raw(format!("│ connection: {id} ")).dim());
    }
    if app.pending() > 0 {
        spans.push(Span::raw(format!("│ {} waiting for acks ", app.pending())).dim());
    }
    if app.scroll > 0 {
        spans.push(Span::raw(format!("│ scrolled up {} rows ", app.scroll)).dim());
    }
    Line::from(spans)
}
