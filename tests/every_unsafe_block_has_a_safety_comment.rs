//! Every `unsafe` block and `unsafe impl` in the crate's sources, tests,
//! examples, benches and stress suite is preceded by a `// SAFETY:` comment.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Whether line `i` opens an unsafe block or impl outside a comment or string.
fn opens_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    let mut rest = code;
    while let Some(at) = rest.find("unsafe") {
        let before = rest[..at].chars().next_back();
        let after = rest[at + "unsafe".len()..].trim_start();
        let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if word_start && (after.starts_with('{') || after.starts_with("impl")) && !code.contains('"') {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in ["src", "tests", "examples", "benches", "stress"] {
        rust_files(&root.join(d), &mut files);
    }
    let mut missing = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !opens_unsafe(line) {
                continue;
            }
            // The comment may sit a few lines up, above attributes or the
            // start of the statement the block belongs to.
            let found = lines[i.saturating_sub(8)..=i]
                .iter()
                .rev()
                .any(|l| l.contains("SAFETY:"));
            if !found {
                missing.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "unsafe without // SAFETY:\n{}",
        missing.join("\n")
    );
}
