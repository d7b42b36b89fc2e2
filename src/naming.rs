//! Naming locks after the variable, static or field they are bound to: the
//! name half of a [`LockSite`](crate::LockSite), shared by the sync and the
//! async lock types.

/// A lock type that can carry a variable name. Implemented by every lock of
/// this crate, and by `Arc`, `Rc` and `Box` of one while they are unshared.
pub trait Nameable {
    /// Sets the name shown in profiles (`file.rs:42:<name>`).
    fn set_name(&mut self, name: &'static str);
}

impl<L: Nameable + ?Sized> Nameable for Box<L> {
    fn set_name(&mut self, name: &'static str) {
        (**self).set_name(name)
    }
}

impl<L: Nameable + ?Sized> Nameable for std::sync::Arc<L> {
    fn set_name(&mut self, name: &'static str) {
        if let Some(lock) = std::sync::Arc::get_mut(self) {
            lock.set_name(name)
        }
    }
}

impl<L: Nameable + ?Sized> Nameable for std::rc::Rc<L> {
    fn set_name(&mut self, name: &'static str) {
        if let Some(lock) = std::rc::Rc::get_mut(self) {
            lock.set_name(name)
        }
    }
}

/// The impls every lock type shares: `Nameable`, and `Default`/`From` that
/// take the caller's site like `new`. The lock's `LockSite` is its field
/// `site`, or at the path given.
macro_rules! lock_type_impls {
    ($lock:ident) => {
        $crate::naming::lock_type_impls!($lock, site);
    };
    ($lock:ident, $($site:ident).+) => {
        impl<T: ?Sized> $crate::naming::Nameable for $lock<T> {
            fn set_name(&mut self, name: &'static str) {
                self.$($site).+ = self.$($site).+.with_name(name);
            }
        }

        impl<T: Default> Default for $lock<T> {
            #[track_caller]
            fn default() -> Self {
                $lock::new(T::default())
            }
        }

        impl<T> From<T> for $lock<T> {
            #[track_caller]
            fn from(value: T) -> Self {
                $lock::new(value)
            }
        }
    };
}
pub(crate) use lock_type_impls;

/// Names locks after the identifier they are bound to, so profiles show
/// `server.rs:42:session_lock` rather than `server.rs:42`.
///
/// Five placements are supported, and instances of locks made in a loop:
///
/// ```
/// use lockprof::{named, ProfiledMutex, ProfiledRwLock};
/// use std::sync::Arc;
///
/// // A static (the lock's `const fn named` is used, so this is a constant).
/// named!(static GLOBAL_CACHE_LOCK: ProfiledMutex<Vec<u32>> = ProfiledMutex::new(Vec::new()));
///
/// struct DatabaseConnection { connection_lock: ProfiledMutex<u32> }
/// struct Pool { primary: DatabaseConnection, size: usize }
/// struct UserManager { user_session_lock: ProfiledRwLock<u32>, _internal_lock: ProfiledMutex<()>, pool: Pool }
///
/// impl UserManager {
///     fn new() -> Self {
///         // Fields of a struct literal (private ones too); fields that are
///         // not locks are left as they are.
///         named!(Self {
///             user_session_lock: ProfiledRwLock::new(0),
///             _internal_lock: ProfiledMutex::new(()),
///             // A nested struct names its own fields.
///             pool: named!(Pool {
///                 primary: named!(DatabaseConnection { connection_lock: ProfiledMutex::new(0) }),
///                 size: 1,
///             }),
///         })
///     }
/// }
///
/// // A local binding, also through Arc/Box while unshared.
/// named!(let request_lock = Arc::new(ProfiledMutex::new(0)));
/// // An expression, named by hand-picked identifier.
/// let response_lock = named!(response_lock = ProfiledMutex::new(0));
/// // Locks made in a loop, one line for all: an instance (any `Display`)
/// // after the name tells them apart (`server.rs:42:shard_lock[2]`).
/// let shards: Vec<ProfiledMutex<u32>> =
///     (0..4).map(|i| named!(shard_lock[i] = ProfiledMutex::new(0))).collect();
///
/// assert_eq!(request_lock.site().name(), Some("request_lock"));
/// assert_eq!(GLOBAL_CACHE_LOCK.site().name(), Some("GLOBAL_CACHE_LOCK"));
/// let users = UserManager::new();
/// assert_eq!(users._internal_lock.site().name(), Some("_internal_lock"));
/// assert_eq!(users.pool.primary.connection_lock.site().name(), Some("connection_lock"));
/// assert_eq!(shards[2].site().name(), Some("shard_lock[2]"));
/// # let _ = (response_lock, users.user_session_lock, users.pool.size);
/// ```
///
/// The line in the label is the line where the lock was created (the
/// constructor call), taken with `#[track_caller]`.
///
/// Each instance name (`shard_lock[2]`) is made once and kept for the life
/// of the process, like the name of a site: meant for a bounded set of
/// instances (shards, workers), not for a fresh index per request.
#[macro_export]
macro_rules! named {
    (let mut $name:ident $(: $ty:ty)? = $value:expr $(;)?) => {
        let mut $name $(: $ty)? = $crate::__private::name($value, ::core::stringify!($name));
    };
    (let $name:ident $(: $ty:ty)? = $value:expr $(;)?) => {
        let $name $(: $ty)? = $crate::__private::name($value, ::core::stringify!($name));
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident : $ty:ty = $value:expr $(;)?) => {
        $(#[$attr])* $vis static $name: $ty = ($value).named(::core::stringify!($name));
    };
    ($name:ident = $value:expr) => {
        $crate::__private::name($value, ::core::stringify!($name))
    };
    ($name:ident [ $instance:expr ] = $value:expr) => {
        $crate::__private::name($value, $crate::__private::instance(::core::stringify!($name), &$instance))
    };
    ($($path:ident)::+ { $($field:ident : $value:expr),* $(,)? }) => {
        $($path)::+ {
            $($field: {
                #[allow(unused_imports)]
                use $crate::__private::{NameLock as _, NameOther as _};
                let mut value = $value;
                (&mut $crate::__private::Probe(&mut value)).__lockprof_name(::core::stringify!($field));
                value
            }),*
        }
    };
}

/// Macro internals; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use super::Nameable;

    /// Names a lock (or `Arc`/`Box` of one).
    pub fn name<L: Nameable>(mut lock: L, name: &'static str) -> L {
        lock.set_name(name);
        lock
    }

    /// The name `name[instance]`, made once per distinct text and shared
    /// by every lock of that instance: the profiler's caches key sites by
    /// the name's address. Runs when a lock is created, never when one is
    /// taken.
    pub fn instance(name: &'static str, instance: &dyn std::fmt::Display) -> &'static str {
        use std::collections::HashSet;
        static NAMES: parking_lot::Mutex<Option<HashSet<&'static str>>> = parking_lot::Mutex::new(None);
        let text = format!("{name}[{instance}]");
        let mut names = NAMES.lock();
        let names = names.get_or_insert_with(HashSet::new);
        if let Some(&made) = names.get(text.as_str()) {
            return made;
        }
        let made: &'static str = Box::leak(text.into_boxed_str());
        names.insert(made);
        made
    }

    /// Autoref dispatch for struct fields: [`NameLock`] applies to lock
    /// fields, [`NameOther`] (one autoref further) to every other field.
    #[allow(missing_debug_implementations)]
    pub struct Probe<'a, T>(pub &'a mut T);

    pub trait NameLock {
        fn __lockprof_name(&mut self, name: &'static str);
    }

    impl<T: Nameable> NameLock for Probe<'_, T> {
        fn __lockprof_name(&mut self, name: &'static str) {
            self.0.set_name(name)
        }
    }

    pub trait NameOther {
        fn __lockprof_name(&mut self, name: &'static str);
    }

    impl<T> NameOther for &mut Probe<'_, T> {
        fn __lockprof_name(&mut self, _name: &'static str) {}
    }
}
