//! Output for people and for scripts: `--json` prints one JSON document (or one per line for
//! streams); otherwise text, coloured only when stdout is a terminal (and `NO_COLOR` unset).

use comfy_table::{Table, presets};
use console::Style;

/// How to print.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// JSON for scripts.
    pub json: bool,
    /// Colours allowed.
    pub color: bool,
}

impl Out {
    /// Text or JSON; colours when stdout is a terminal that takes them.
    pub fn new(json: bool) -> Self {
        let color = !json && std::env::var_os("NO_COLOR").is_none() && console::colors_enabled();
        Self { json, color }
    }

    /// Prints a JSON value on one line.
    pub fn json_line(&self, value: &serde_json::Value) {
        println!("{value}");
    }

    /// `text` in `style` when colours are on.
    pub fn paint(&self, text: impl std::fmt::Display, style: &Style) -> String {
        if self.color { style.apply_to(text).force_styling(true).to_string() } else { text.to_string() }
    }

    /// The colour of a state or status name: green for success, red for failure, yellow for
    /// waiting, dim for the rest.
    pub fn state(&self, name: &str) -> String {
        let style = match name {
            "delivered" | "read" | "clicked" | "replied" => Style::new().green().bold(),
            "failed" | "expired" | "unreachable" | "rejected" => Style::new().red().bold(),
            "cancelled" | "skipped" | "unknown" | "paused" => Style::new().yellow(),
            "running" | "accepted" | "sent" => Style::new().cyan(),
            _ => Style::new(),
        };
        self.paint(name, &style)
    }

    /// Dim text (times, ids).
    pub fn dim(&self, text: impl std::fmt::Display) -> String {
        self.paint(text, &Style::new().dim())
    }

    /// Bold text (headings).
    pub fn bold(&self, text: impl std::fmt::Display) -> String {
        self.paint(text, &Style::new().bold())
    }

    /// A table with `header`, borderless, for terminals and pipes alike.
    pub fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::NOTHING);
        t.set_header(header.iter().map(|h| self.bold(h)));
        t
    }
}
