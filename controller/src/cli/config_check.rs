//! `bindwave config check`.

use super::output::{emit, Format};
use crate::table::Table;
use crate::ControllerError;

/// `bindwave config check`: every problem of the file, or the effective settings and their sources.
pub(super) fn run(path: Option<&std::path::Path>, output: Format) -> Result<(), ControllerError> {
    use crate::config::{load_file, ServeFile, ServeSettings};
    let file = match path {
        Some(p) => load_file(p),
        None => Ok(ServeFile::default()),
    };
    let settings = file.and_then(|f| ServeSettings::resolve(&crate::config::Flags::default(), &f));
    let shown = path.map_or("(no file)".to_string(), |p| p.display().to_string());
    match settings {
        Err(problems) => {
            if output == Format::Table {
                for p in &problems {
                    eprintln!("  {p}");
                }
            } else {
                emit(&serde_json::json!({ "valid": false, "config": shown, "problems": problems }), output, |_| {})?;
            }
            Err(ControllerError::ConfigProblems { path: shown, count: problems.len() })
        }
        Ok(s) => {
            let value = serde_json::to_value(&s).unwrap_or_default();
            let rows: Vec<_> = crate::config::KEYS
                .iter()
                .map(|(key, var, default)| {
                    let source = s.sources.get(key).copied().unwrap_or(crate::config::Source::Default);
                    let v = match &value[*key] {
                        serde_json::Value::Null => default.to_string(),
                        serde_json::Value::Array(a) if a.is_empty() => default.to_string(),
                        serde_json::Value::String(t) => t.clone(),
                        other => other.to_string(),
                    };
                    serde_json::json!({ "key": key, "value": v, "source": source, "env": var })
                })
                .collect();
            emit(&serde_json::json!({ "valid": true, "config": shown, "settings": rows }), output, |_| {
                println!("{shown}: valid");
                let mut t = Table::new(["KEY", "VALUE", "FROM", "ENVIRONMENT"]);
                for r in &rows {
                    let cell = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    t.row([cell("key"), cell("value"), cell("source"), cell("env")]);
                }
                print!("{t}");
            })
        }
    }
}
