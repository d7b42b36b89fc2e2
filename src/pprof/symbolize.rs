//! Addresses to function names, files and lines, with a cache that lives as
//! long as the profiler, so each address is resolved once.

use std::collections::HashMap;
use std::sync::Arc;

use super::symtab::SymbolTables;
use crate::util::fxhash::FxHashMap;

/// One source frame; an address yields several when calls were inlined,
/// innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Frame {
    pub(crate) function: Arc<str>,
    pub(crate) file: Arc<str>,
    pub(crate) line: u32,
}

/// The frames of one address, innermost first.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) frames: Vec<Frame>,
}

#[derive(Default)]
pub(crate) struct Symbolizer {
    cache: FxHashMap<usize, Arc<Resolved>>,
    names: HashMap<String, Arc<str>>,
    symtab: SymbolTables,
    /// The module path of each source file, learned from full names.
    modules: HashMap<String, String>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Symbolizer {
    /// Resolves a return address (the caller's line is the one before it).
    pub(crate) fn resolve(&mut self, return_address: usize) -> Arc<Resolved> {
        if let Some(r) = self.cache.get(&return_address) {
            return Arc::clone(r);
        }
        let mut raw = Vec::new();
        // Looking up `address - 1` lands inside the call instruction, so the
        // reported line is the call's, not the next statement's.
        let lookup = return_address.saturating_sub(1) as *mut std::ffi::c_void;
        backtrace::resolve(lookup, |symbol| {
            let function = match symbol.name() {
                // `{:#}` demangles without the hash suffix.
                Some(name) => format!("{name:#}"),
                None => format!("{return_address:#x}"),
            };
            let file = symbol
                .filename()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            raw.push((function, file, symbol.lineno().unwrap_or(0)));
        });
        if raw.is_empty() {
            raw.push((format!("{return_address:#x}"), String::new(), 0));
        }
        self.qualify(lookup as usize, &mut raw);
        let frames = raw
            .into_iter()
            .map(|(function, file, line)| Frame {
                function: self.intern(function),
                file: self.intern(file),
                line,
            })
            .collect();
        let r = Arc::new(Resolved { frames });
        self.cache.insert(return_address, Arc::clone(&r));
        r
    }

    /// Gives the frames of one address (innermost first) their paths where
    /// the debug info gave short names only (`lock_within<u64>`,
    /// `{closure#1}`: release builds with `debug = "line-tables-only"`): the
    /// outermost, the function the address is in, from the symbol table;
    /// each frame inlined into it from the module of its source file, as
    /// learned from full names (`lock_profiler_stress::lock_within<u64>`).
    /// Frames of files not seen with a full name yet stay short.
    fn qualify(&mut self, address: usize, raw: &mut [(String, String, u32)]) {
        let Some(((outer, outer_file, _), inlined)) = raw.split_last_mut() else {
            return;
        };
        if is_short(outer) {
            if let Some(full) = self.symtab.function_name(address) {
                *outer = qualified(outer, &full);
            }
        }
        if let Some(module) = module_of(outer).filter(|_| !outer_file.is_empty()) {
            self.modules.insert(outer_file.clone(), module);
        }
        for (function, file, _) in inlined {
            if is_short(function) {
                if let Some(module) = self.modules.get(file.as_str()) {
                    *function = format!("{module}::{function}");
                }
            }
        }
    }

    fn intern(&mut self, s: String) -> Arc<str> {
        if let Some(a) = self.names.get(&s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s.as_str());
        self.names.insert(s, Arc::clone(&a));
        a
    }

    /// Symbolizes a captured stack for the profile: drops the profiler's own
    /// frames at the leaf, then keeps at most `max_frames`. Returns the frames
    /// (leaf first, one entry per address) and how many were cut.
    ///
    /// With `in_task` (an event inside a tokio task), the frames from the
    /// first of tokio's scheduler (which polls the task's future) to the root
    /// are dropped before the limit applies, and the last value is true: the
    /// caller shows them as one `<tokio runtime>` frame, so the task's own
    /// async fns are the whole stack rather than the tip of 40 executor
    /// frames.
    pub(crate) fn user_stack(
        &mut self,
        ips: &[usize],
        omitted: u32,
        max_frames: usize,
        in_task: bool,
    ) -> (Vec<UserFrame>, u64, bool) {
        let mut out: Vec<UserFrame> = Vec::with_capacity(ips.len());
        let mut at_leaf = true;
        for &ip in ips {
            let resolved = self.resolve(ip);
            let end = resolved.frames.len();
            let mut start = 0;
            if at_leaf {
                // Inlined frames are innermost first: drop ours from the front.
                start = resolved.frames.iter().take_while(|f| is_internal(f)).count();
                if start == end {
                    continue;
                }
                at_leaf = false;
            }
            out.push(UserFrame {
                ip,
                resolved,
                start,
                end,
            });
        }
        if in_task {
            let executor = out.iter().position(|u| u.frames().iter().any(is_executor));
            if let Some(at) = executor {
                // Calls inlined into the scheduler's frame (innermost first)
                // that are not the scheduler's are the task's: keep them.
                let mut kept = out[at].clone();
                kept.end = kept.start + kept.frames().iter().take_while(|f| !is_executor(f)).count();
                out.truncate(at);
                if kept.start < kept.end {
                    out.push(kept);
                }
                // Our own frames right above the scheduler are the task-name
                // wrapper (`with_task_name`), already shown as a label. In an
                // optimized build the task's code may be inlined into the
                // wrapper: then only the wrapper's (outermost) part of that
                // address goes.
                while let Some(last) = out.last_mut() {
                    let ours = last.frames().iter().rev().take_while(|f| is_internal(f)).count();
                    if ours == last.frames().len() {
                        out.pop();
                        continue;
                    }
                    last.end -= ours;
                    break;
                }
                let cut = out.len().saturating_sub(max_frames) as u64;
                out.truncate(max_frames);
                return (out, cut, true);
            }
        }
        let mut cut = omitted as u64;
        if out.len() > max_frames {
            cut += (out.len() - max_frames) as u64;
            out.truncate(max_frames);
        }
        (out, cut, false)
    }
}

/// One address of a symbolized stack: a range of its cached resolution,
/// shared rather than copied for every sample.
#[derive(Debug, Clone)]
pub(crate) struct UserFrame {
    pub(crate) ip: usize,
    resolved: Arc<Resolved>,
    start: usize,
    end: usize,
}

impl UserFrame {
    /// The source frames kept at this address, innermost first.
    pub(crate) fn frames(&self) -> &[Frame] {
        &self.resolved.frames[self.start..self.end]
    }
}

/// The `::`-separated segments of a name, outside generic arguments.
fn segments(name: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                out.push(&name[start..i]);
                start = i + 2;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&name[start..]);
    out
}

/// A name without a path: one segment outside generic arguments.
fn is_short(name: &str) -> bool {
    segments(name).len() == 1
}

fn is_closure(segment: &str) -> bool {
    segment.starts_with("{{closure}}") || segment.starts_with("{closure")
}

/// The module path of a full function name: the segments before the
/// function, less closures and types (`a::b::Type::method::{{closure}}` →
/// `a::b`); `None` for trait impls (`<T as Trait>::f`) and short names.
fn module_of(full: &str) -> Option<String> {
    if full.starts_with('<') {
        return None;
    }
    let mut segments = segments(full);
    while segments.last().is_some_and(|s| is_closure(s)) {
        segments.pop();
    }
    segments.pop();
    while segments
        .last()
        .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
    {
        segments.pop();
    }
    (!segments.is_empty()).then(|| segments.join("::"))
}

/// The short name of the function an address is in, given its full name
/// from the symbol table: the full name's path with the short name's
/// generic arguments (`lock_profiler_stress::lock_within<u64>`), or the full
/// name for closures, whose enclosing function only it names.
fn qualified(short: &str, full: &str) -> String {
    let base = |s: &str| s.split('<').next().unwrap_or(s).to_owned();
    let mut path = segments(full);
    match path.pop() {
        Some(last) if !is_closure(short) && base(last) == base(short) && !path.is_empty() => {
            format!("{}::{short}", path.join("::"))
        }
        _ => full.to_owned(),
    }
}

/// Frames of tokio's scheduler: in a task, these and everything below them
/// (worker loop, thread start) are the executor.
/// Recognised by name, or by source file where optimized builds give only
/// short names.
fn is_executor(frame: &Frame) -> bool {
    is_executor_name(&frame.function)
        || (frame.file.contains("/tokio-") && frame.file.contains("/src/runtime/"))
}

fn is_executor_name(function: &str) -> bool {
    function.starts_with("tokio::runtime::") || function.starts_with("<tokio::runtime::")
}

/// Frames of the profiler itself, and the unwinding, panic-catching or drop
/// glue around them, which are removed from the leaf of every stack (only
/// there: the first frame that is not one of these ends the trimming).
///
/// Recognised by name and, because optimized builds with
/// `debug = "line-tables-only"` give inlined frames their short names only
/// (`capture`, `drop_in_place<…>`), by source file too.
pub(crate) fn is_internal(frame: &Frame) -> bool {
    is_internal_name(&frame.function) || is_internal_file(&frame.file, &frame.function)
}

/// This crate's own sources, as debug info records their paths.
const OWN_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Standard-library files whose functions are only glue at the leaf: panic
/// catching, closure calls and thread-locals around the profiler's code.
const GLUE_SOURCES: &[&str] = &[
    "std/src/panicking.rs",
    "std/src/panic.rs",
    "core/src/panic/unwind_safe.rs",
    "core/src/ops/function.rs",
    "std/src/thread/local.rs",
];

fn is_internal_file(file: &str, function: &str) -> bool {
    file.starts_with(OWN_SOURCES)
        || GLUE_SOURCES.iter().any(|g| file.ends_with(g))
        || (file.ends_with("core/src/ptr/mod.rs") && function.starts_with("drop_in_place"))
        || (file.ends_with("core/src/mem/mod.rs") && function.starts_with("drop"))
        || (file.contains("/backtrace-") && file.contains("/src/"))
}

fn is_internal_name(function: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "lockprof::",
        "<lockprof::",
        // Drop glue between the user's code and the guard's `drop`.
        "core::ptr::drop_in_place<",
        "core::mem::drop",
        "backtrace::",
        "<backtrace::",
        "std::panicking::",
        "std::panic::catch_unwind",
        "__rust_try",
        "core::ops::function::FnOnce::call_once",
        "std::thread::local::LocalKey",
        "<core::panic::unwind_safe::AssertUnwindSafe",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profilers_frames_are_internal_and_users_are_not() {
        assert!(is_internal_name("lockprof::record::acquire_sampled"));
        assert!(is_internal_name(
            "<lockprof::sync::mutex::ProfiledMutexGuard<T> as core::ops::drop::Drop>::drop"
        ));
        assert!(is_internal_name(
            "core::ptr::drop_in_place<lockprof::sync::mutex::ProfiledMutexGuard<u32>>"
        ));
        assert!(!is_internal_name("lockprof_demo::work"));
        assert!(!is_internal_name("server::handle_request"));
    }

    #[test]
    fn short_names_of_inlined_frames_are_recognised_by_file() {
        let frame = |function: &str, file: &str| Frame {
            function: function.into(),
            file: file.into(),
            line: 1,
        };
        let own = format!("{OWN_SOURCES}record/stack.rs");
        assert!(is_internal(&frame("capture", &own)));
        assert!(is_internal(&frame(
            "drop_in_place<lockprof::sync::mutex::ProfiledMutexGuard<u32>>",
            "/rustc/abc/library/core/src/ptr/mod.rs"
        )));
        assert!(!is_internal(&frame("handle", "/home/me/app/src/record/stack.rs")));
    }

    #[test]
    fn short_names_get_the_path_of_their_function_or_module() {
        assert!(is_short("lock_within<u64>"));
        assert!(is_short("__rust_begin_short_backtrace<a::b::{closure#0}, c::D>"));
        assert!(!is_short("lock_profiler_stress::lock_within<u64>"));
        assert!(!is_short(
            "<alloc::boxed::Box<F> as core::ops::FnOnce<()>>::call_once"
        ));
        assert_eq!(
            module_of("lock_profiler_stress::high_contention::{{closure}}").as_deref(),
            Some("lock_profiler_stress")
        );
        assert_eq!(
            module_of("app::store::Store<T>::get").as_deref(),
            Some("app::store")
        );
        assert_eq!(module_of("<app::Store as Drop>::drop"), None);
        assert_eq!(
            qualified("lock_within<u64>", "lock_profiler_stress::lock_within"),
            "lock_profiler_stress::lock_within<u64>"
        );
        assert_eq!(
            qualified(
                "{closure#1}",
                "lock_profiler_stress::high_contention::{{closure}}"
            ),
            "lock_profiler_stress::high_contention::{{closure}}"
        );
    }

    #[test]
    fn frames_inlined_into_a_function_take_its_module() {
        let mut s = Symbolizer::default();
        s.modules.insert("/app/src/main.rs".to_owned(), "app".to_owned());
        let mut raw = vec![
            ("lock_within<u64>".to_owned(), "/app/src/main.rs".to_owned(), 9),
            ("{closure#0}".to_owned(), "/app/src/main.rs".to_owned(), 20),
            ("helper".to_owned(), "/other/src/lib.rs".to_owned(), 3),
            ("app::run".to_owned(), "/app/src/run.rs".to_owned(), 30),
        ];
        s.qualify(0, &mut raw);
        assert_eq!(raw[0].0, "app::lock_within<u64>");
        assert_eq!(raw[1].0, "app::{closure#0}");
        assert_eq!(raw[2].0, "helper", "a file of unknown module stays short");
        assert_eq!(s.modules.get("/app/src/run.rs").map(String::as_str), Some("app"));
    }

    #[test]
    fn tokio_scheduler_frames_are_the_executor_and_task_futures_are_not() {
        assert!(is_executor_name("tokio::runtime::task::core::Core<T,S>::poll"));
        assert!(is_executor_name(
            "<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll"
        ));
        assert!(!is_executor_name(
            "<tokio::time::timeout::Timeout<T> as core::future::future::Future>::poll"
        ));
        assert!(!is_executor_name(
            "tokio::task::task_local::LocalKey<T>::scope_inner"
        ));
        assert!(!is_executor_name("server::handle_request::{{closure}}"));
    }
}
