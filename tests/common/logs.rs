//! Captures the `log` records of the test binary.

use std::sync::{Mutex, Once};

struct Capture;
static LOGGED: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOGGED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once) and forgets what was logged so far.
pub fn start() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Trace);
    });
    LOGGED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The messages logged at `level` since [`start`].
pub fn at(level: log::Level) -> Vec<String> {
    LOGGED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(l, _)| *l == level)
        .map(|(_, m)| m.clone())
        .collect()
}

/// Everything logged since [`start`], one message a line.
pub fn all() -> String {
    LOGGED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(l, m)| format!("{l} {m}\n"))
        .collect()
}
