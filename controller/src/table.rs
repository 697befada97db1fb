//! Tables for the CLI, kubectl style: a header row and left-aligned columns two spaces apart, no borders.
//! On a terminal the table fits its width (long cells wrap); into a pipe or file it is never wrapped, so
//! scripts and snapshots see whole lines.

use std::fmt;

use comfy_table::{presets::NOTHING, ContentArrangement};

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(headers: [&str; N]) -> Self {
        Table { header: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.into());
    }

    fn render(&self, width: Option<u16>) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(NOTHING);
        t.set_header(&self.header);
        for r in &self.rows {
            t.add_row(r);
        }
        match width {
            Some(w) => {
                t.set_content_arrangement(ContentArrangement::Dynamic);
                t.set_width(w);
            }
            None => {
                t.force_no_tty();
                t.set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        let last = self.header.len().saturating_sub(1);
        for (i, c) in t.column_iter_mut().enumerate() {
            c.set_padding((0, if i == last { 0 } else { 2 }));
        }
        let mut out = String::new();
        for line in t.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The terminal's width, when stdout is one.
fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).or_else(|| {
        let t = comfy_table::Table::new();
        t.width()
    })
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(terminal_width()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(["A", "LONGER"]);
        t.row(["xyz".into(), "1".into()]);
        assert_eq!(t.render(None), "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn a_narrow_terminal_wraps_cells_instead_of_overflowing() {
        let mut t = Table::new(["DEVICE", "REASON"]);
        t.row(["phone-0001".into(), "hardware level 2 is not among the bind's supported levels 3, 4".into()]);
        let text = t.render(Some(40));
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains("phone-0001"), "{text}");
        assert!(t.render(None).lines().any(|l| l.chars().count() > 40));
    }
}
