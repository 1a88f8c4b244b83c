//! `cargo xtask tidy`: source hygiene checks that rustc and clippy do not make.
//!
//! - every tracked `.rs` file opens with a `//!` line saying what the file is (house style:
//!   a reader landing in any file learns its purpose from the first line);
//! - no `dbg!(` or `todo!(` in non-test code (they are fine while working, never on main).
//!
//! Test code is skipped for the second check: files under a `tests/` or `benches/` folder,
//! `tests.rs`/`test.rs` files, and items marked `#[cfg(test)]` or `#[test]`. The same check runs
//! as a unit test (`workspace_is_tidy`), so `cargo test --workspace` enforces it too.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::repo_root;

// Spelled in two halves so that this file does not match its own patterns.
const BANNED: [&str; 2] = [concat!("dbg", "!("), concat!("todo", "!(")];

/// One finding, with the file relative to the workspace root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    file: PathBuf,
    line: usize,
    message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Entry point of `cargo xtask tidy`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`cargo xtask tidy` takes no arguments (got `{a}`)");
    }
    let root = repo_root();
    let files = tracked_rs_files(&root)?;
    let problems = check_files(&root, &files)?;
    if problems.is_empty() {
        println!("tidy: {} .rs files checked, all tidy", files.len());
        return Ok(());
    }
    println!("tidy: {} problem(s) in {} .rs files checked:", problems.len(), files.len());
    for p in &problems {
        println!("  {p}");
    }
    bail!("tidy found {} problem(s); fix them (see above)", problems.len())
}

/// Every `.rs` file git tracks in the workspace, relative to `root`. Without git (a source
/// tarball), every `.rs` file outside `target/` and hidden folders.
fn tracked_rs_files(root: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("git").args(["ls-files", "-z", "--", "*.rs"]).current_dir(root).output();
    match out {
        Ok(out) if out.status.success() => {
            let list = String::from_utf8(out.stdout).context("git ls-files printed a non-UTF-8 path")?;
            Ok(list
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .filter(|p| root.join(p).is_file())
                .collect())
        }
        _ => {
            let mut files = Vec::new();
            walk(root, root, &mut files)?;
            files.sort();
            Ok(files)
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn check_files(root: &Path, files: &[PathBuf]) -> Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for rel in files {
        let text =
            std::fs::read_to_string(root.join(rel)).with_context(|| format!("reading {}", rel.display()))?;
        problems.extend(check_source(rel, &text));
    }
    Ok(problems)
}

/// Checks one file's text; `rel` decides whether the whole file is test code.
fn check_source(rel: &Path, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let problem = |line, message: String| Problem { file: rel.to_path_buf(), line, message };
    if !text.lines().next().is_some_and(|l| l.starts_with("//!")) {
        problems.push(problem(
            1,
            "does not open with a `//!` line; start the file with a doc comment saying what it is".to_owned(),
        ));
    }
    if is_test_path(rel) {
        return problems;
    }
    let mut skip = Skip::None;
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim_start();
        if skip == Skip::None && (trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[test]")) {
            skip = Skip::Pending;
        }
        if skip != Skip::None {
            skip = skip.advance(code);
            continue;
        }
        for pat in BANNED {
            if code.contains(pat) {
                problems.push(problem(
                    i + 1,
                    format!("`{pat}` in non-test code; remove it (or move it under #[cfg(test)])"),
                ));
            }
        }
    }
    problems
}

/// Skipping state for an item under `#[cfg(test)]` / `#[test]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    /// Seen the attribute, not yet the item's `{` (or its `;` for `mod tests;`).
    Pending,
    /// Inside the item at this brace depth.
    Inside(usize),
}

// === impl Skip ===

impl Skip {
    fn advance(mut self, code: &str) -> Skip {
        for c in code.chars() {
            self = match (self, c) {
                (Skip::Pending, '{') => Skip::Inside(1),
                (Skip::Pending, ';') => Skip::None,
                (Skip::Inside(d), '{') => Skip::Inside(d + 1),
                (Skip::Inside(1), '}') => Skip::None,
                (Skip::Inside(d), '}') => Skip::Inside(d - 1),
                (s, _) => s,
            };
        }
        self
    }
}

fn is_test_path(rel: &Path) -> bool {
    let in_test_dir = rel.components().any(|c| matches!(c.as_os_str().to_str(), Some("tests" | "benches")));
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    in_test_dir || matches!(name, "tests.rs" | "test.rs") || name.ends_with("_tests.rs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_is_tidy() {
        let root = repo_root();
        let files = tracked_rs_files(&root).expect("listing .rs files");
        assert!(!files.is_empty(), "found no .rs files under {}", root.display());
        let problems = check_files(&root, &files).expect("reading .rs files");
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "cargo xtask tidy found problems:\n{}", list.join("\n"));
    }

    #[test]
    fn requires_a_module_doc_first_line() {
        let p = check_source(Path::new("src/a.rs"), "use x;\n//! late\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 1);
        assert!(check_source(Path::new("src/a.rs"), "//! A thing.\nfn f() {}\n").is_empty());
        assert_eq!(check_source(Path::new("src/a.rs"), "").len(), 1);
    }

    #[test]
    fn flags_banned_macros_outside_tests_only() {
        let dbg = BANNED[0];
        let src = format!(
            "//! x\nfn f() {{ {dbg}1); }}\n#[cfg(test)]\nmod tests {{\n    fn g() {{ {dbg}2); }}\n}}\nfn h() {{ {dbg}3); }}\n"
        );
        let lines: Vec<usize> = check_source(Path::new("src/a.rs"), &src).iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 7]);
        assert!(check_source(Path::new("tests/it.rs"), &src).is_empty());
        assert!(check_source(Path::new("src/a.rs"), &format!("//! x\n// {dbg}1) in a comment\n")).is_empty());
    }

    #[test]
    fn test_attribute_and_module_declarations_end_the_skip() {
        let todo = BANNED[1];
        let src =
            format!("//! x\n#[cfg(test)]\nmod tests;\nfn f() {{ {todo}) }}\n#[test]\nfn t() {{ {todo}) }}\n");
        let lines: Vec<usize> = check_source(Path::new("src/a.rs"), &src).iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![4]);
    }
}
