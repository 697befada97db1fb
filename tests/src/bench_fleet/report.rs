//! The results table: each figure beside its floor or target, and the ratio. Pure: rows in, text out.

/// What a figure is held against.
#[derive(Debug, Clone, PartialEq)]
pub enum Against {
    /// Nothing: a figure that explains the others (CPU seconds, memory).
    Nothing,
    /// Its floor, measured in the same run; the ratio is measured / floor, and it should be at most `max`.
    Floor { floor: String, ratio: f64, max: f64 },
    /// A target the figure should reach (`at_least`) or stay under; the ratio is measured / target.
    Target { target: String, ratio: f64, at_least: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub phones: usize,
    pub broker: &'static str,
    pub measured: String,
    pub against: Against,
}

impl Row {
    pub fn new(figure: &str, phones: usize, broker: &'static str, measured: String, against: Against) -> Row {
        Row { figure: figure.to_string(), phones, broker, measured, against }
    }

    /// The floor or target column, the ratio, and whether the figure meets it.
    fn judged(&self) -> (String, String, &'static str) {
        match &self.against {
            Against::Nothing => (String::new(), String::new(), ""),
            Against::Floor { floor, ratio, max } => {
                (format!("floor {floor} (<= {max}x)"), format!("{ratio:.2}x"), if ratio <= max { "ok" } else { "OVER" })
            }
            Against::Target { target, ratio, at_least } => {
                let ok = if *at_least { *ratio >= 1.0 } else { *ratio <= 1.0 };
                let word = if *at_least { ">=" } else { "<=" };
                (format!("target {word} {target}"), format!("{ratio:.2}x"), if ok { "ok" } else { "SHORT" })
            }
        }
    }
}

/// The table, with a header, columns aligned.
pub fn render(rows: &[Row]) -> String {
    let header = ["FIGURE", "PHONES", "BROKER", "MEASURED", "FLOOR / TARGET", "RATIO", ""];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let (against, ratio, verdict) = r.judged();
            [
                r.figure.clone(),
                thousands(r.phones as f64),
                r.broker.to_string(),
                r.measured.clone(),
                against,
                ratio,
                verdict.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 7]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left-aligned.
            let right = matches!(i, 1 | 3 | 5);
            let pad = w.saturating_sub(c.chars().count());
            if right {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in &cells {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6]]));
    }
    out
}

/// `12,345` (rounded to a whole number).
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

pub fn per_sec(v: f64) -> String {
    format!("{}/s", thousands(v))
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn kib(kib: f64) -> String {
    format!("{kib:.1} KiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
    }

    #[test]
    fn a_row_shows_its_floor_and_ratio() {
        let floor = Against::Floor { floor: "1.00 s".into(), ratio: 2.5, max: 1.5 };
        let target = Against::Target { target: "5,000/s".into(), ratio: 1.2, at_least: true };
        let rows = [
            Row::new("rollout wall time", 10_000, "embedded", secs(2.5), floor),
            Row::new("phones updated per second", 10_000, "embedded", per_sec(6000.0), target),
            Row::new("controller CPU", 10_000, "embedded", secs(3.0), Against::Nothing),
        ];
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[1].contains("floor 1.00 s (<= 1.5x)") && lines[1].contains("2.50x") && lines[1].ends_with("OVER")
        );
        assert!(lines[2].contains("target >= 5,000/s") && lines[2].ends_with("ok"));
        assert!(lines[3].ends_with("3.00 s"));
        assert!(lines[1].contains("10,000"));
    }
}
