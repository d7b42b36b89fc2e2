//! The named scenario configurations (`stress/stress_configs.toml`) and
//! their translation into `lock_profiler_stress` flags.

use std::path::Path;

/// The configurations shipped with the stress suite, built into the runner.
pub const BUILTIN: &str = include_str!("../stress_configs.toml");

/// One named configuration: a scenario type and its parameters, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `high-contention-50-threads`, …
    pub name: String,
    /// `high_contention`, …
    pub scenario_type: String,
    /// Every other key, as written.
    pub params: Vec<(String, toml::Value)>,
}

impl Entry {
    /// The `lock_profiler_stress` flags that run this entry:
    /// `--scenario-type high_contention --num-threads 50 …`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--scenario-type".to_owned(), self.scenario_type.clone()];
        for (key, value) in &self.params {
            args.push(format!("--{}", key.replace('_', "-")));
            args.push(match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        args
    }
}

/// Parses a configuration file's text.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut entries = Vec::with_capacity(table.len());
    for (name, value) in table {
        let toml::Value::Table(fields) = value else {
            return Err(format!("`{name}` is not a table of parameters"));
        };
        let mut scenario_type = None;
        let mut params = Vec::new();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("scenario_type", toml::Value::String(s)) => scenario_type = Some(s),
                ("scenario_type", _) => return Err(format!("`{name}.scenario_type` is not a string")),
                (_, value @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => {
                    params.push((key, value))
                }
                (_, value @ toml::Value::String(_)) => params.push((key, value)),
                _ => return Err(format!("`{name}.{key}` must be a number, boolean or string")),
            }
        }
        let scenario_type = scenario_type.ok_or_else(|| format!("`{name}` has no scenario_type"))?;
        entries.push(Entry {
            name,
            scenario_type,
            params,
        });
    }
    Ok(entries)
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The entries named in `selection` (comma-separated exact names, as in
/// `BENCHMARK_CONFIGS`), in the order given; all of them for `None` or an
/// empty selection. Unknown names are an error that lists the valid ones.
pub fn select<'a>(entries: &'a [Entry], selection: Option<&str>) -> Result<Vec<&'a Entry>, String> {
    let names: Vec<&str> = selection
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(entries.iter().collect());
    }
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !entries.iter().any(|e| e.name == *n))
        .collect();
    if !unknown.is_empty() {
        let valid: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        return Err(format!(
            "unknown configuration name(s): {}\nvalid names: {}",
            unknown.join(", "),
            valid.join(", ")
        ));
    }
    Ok(names
        .iter()
        .filter_map(|n| entries.iter().find(|e| e.name == *n))
        .collect())
}

/// The features of this package the runner was built with:
/// `lock_profiler_stress` is built with the same ones, so nothing is rebuilt.
pub fn enabled_features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "tokio") {
        features.push("tokio");
    }
    if cfg!(feature = "datadog") {
        features.push("datadog");
    }
    features
}
