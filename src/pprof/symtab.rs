//! Full names from the symbol table, for the function an address is in.
//!
//! Built with `debug = "line-tables-only"` (the release profile of many
//! projects, this one's included), the debug info names functions by their
//! short names only (`lock_within<u64>`, `{closure#1}`: no namespaces), and
//! so does `backtrace` for every frame of an address. The symbol table still
//! holds the mangled path of every function that was not inlined, so the
//! function an address is in has its full name, and `symbolize.rs` qualifies
//! the frames inlined into it from that. Loaded once per object, on the
//! profiler's thread, at the first address in it.

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

    /// One object's function symbols, sorted by address (link-time, before
    /// the load bias).
    struct Table {
        /// Subtracted from a run-time address to get a link-time one.
        bias: usize,
        functions: Vec<(u64, u64, Box<[u8]>)>,
    }

    /// Symbol tables by the base address `dladdr` gives an object.
    #[derive(Default)]
    pub(crate) struct SymbolTables {
        tables: HashMap<usize, Option<Table>>,
    }

    impl SymbolTables {
        /// The demangled full name of the function containing `address`
        /// (`lock_profiler_stress::high_contention::{{closure}}`), if a
        /// symbol table has it.
        pub(crate) fn function_name(&mut self, address: usize) -> Option<String> {
            let (base, path) = containing_object(address)?;
            let table = self
                .tables
                .entry(base)
                .or_insert_with(|| load(base, &path))
                .as_ref()?;
            let at = address.checked_sub(table.bias)? as u64;
            let i = table.functions.partition_point(|(start, _, _)| *start <= at);
            let (start, size, name) = table.functions.get(i.checked_sub(1)?)?;
            (at < start + (*size).max(1)).then(|| format!("{:#}", backtrace::SymbolName::new(name)))
        }
    }

    /// The base address and file of the object `address` is in.
    fn containing_object(address: usize) -> Option<(usize, PathBuf)> {
        let mut info = libc::Dl_info {
            dli_fname: std::ptr::null(),
            dli_fbase: std::ptr::null_mut(),
            dli_sname: std::ptr::null(),
            dli_saddr: std::ptr::null_mut(),
        };
        // SAFETY: `dladdr` only reads the loader's tables and writes `info`,
        // which lives across the call; any address may be asked about.
        if unsafe { libc::dladdr(address as *const libc::c_void, &mut info) } == 0 || info.dli_fbase.is_null()
        {
            return None;
        }
        let name = if info.dli_fname.is_null() {
            None
        } else {
            // SAFETY: a non-null `dli_fname` is a NUL-terminated string
            // owned by the loader, valid while the object stays loaded.
            Some(unsafe { std::ffi::CStr::from_ptr(info.dli_fname) })
        };
        // The main program's name is argv[0], which need not be a path.
        let path = match name.map(|n| PathBuf::from(n.to_string_lossy().into_owned())) {
            Some(p) if p.is_absolute() && p.is_file() => p,
            _ => PathBuf::from("/proc/self/exe"),
        };
        Some((info.dli_fbase as usize, path))
    }

    fn load(base: usize, path: &std::path::Path) -> Option<Table> {
        let mapped = Mapped::open(path)?;
        let file = object::File::parse(mapped.bytes()).ok()?;
        // `dladdr`'s base is where the lowest segment's page was mapped.
        let lowest = file.segments().map(|s| s.address()).min()? & !0xfff;
        let bias = base.checked_sub(lowest as usize)?;
        let mut functions: Vec<(u64, u64, Box<[u8]>)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name_bytes().ok()?.into())))
            .collect();
        functions.sort_unstable_by_key(|(start, _, _)| *start);
        Some(Table { bias, functions })
    }

    /// A file mapped read-only: parsing touches only the symbol and string
    /// tables' pages, not the whole executable (tens of MiB with debug
    /// info), and unmapping gives them back.
    struct Mapped {
        ptr: *mut libc::c_void,
        len: usize,
    }

    impl Mapped {
        fn open(path: &std::path::Path) -> Option<Mapped> {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(path).ok()?;
            let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
            if len == 0 {
                return None;
            }
            // SAFETY: a fresh private read-only mapping of an open file; the
            // kernel checks the descriptor and length, and the mapping
            // outlives the descriptor (closed when `file` drops).
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
        }

        fn bytes(&self) -> &[u8] {
            // SAFETY: `len` readable bytes are mapped at `ptr` until `self`
            // drops, and nothing writes to a private read-only mapping.
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `open`, unmapped once; the names
            // kept were copied out of it.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// No symbol table reading here: names stay as the debug info gives them.
    #[derive(Default)]
    pub(crate) struct SymbolTables;

    impl SymbolTables {
        pub(crate) fn function_name(&mut self, _address: usize) -> Option<String> {
            None
        }
    }
}

pub(crate) use imp::SymbolTables;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_of_this_test() -> usize {
        a_function_of_this_test as *const () as usize
    }

    #[test]
    fn the_function_an_address_is_in_has_its_full_name() {
        let address = a_function_of_this_test() + 1;
        let name = SymbolTables::default().function_name(address).expect("a name");
        assert!(name.ends_with("symtab::tests::a_function_of_this_test"), "{name}");
    }
}
