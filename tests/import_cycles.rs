//! No import circles between the modules of any crate of the workspace.
//!
//! A crate's modules are its top-level ones (a file `src/x.rs` or a directory `src/x/`); module
//! `a` uses module `b` when code of `a` names a path `crate::b::...`, or `crate::Name` where
//! the crate root re-exports `Name` from `b` (`pub use b::Name`). Comments (doc links
//! included) and code under `#[cfg(test)]` do not count: tests may reach anywhere. A circle
//! of such uses fails the test, which names every module in it and one line for each use
//! that closes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Uses between the modules of one crate: (from, to) to the first place it is made.
type Uses = BTreeMap<(String, String), String>;

/// The workspace's crates, from the root `Cargo.toml`.
fn crates(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("a members list")
        .0;
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| root.join(m))
        .collect()
}

/// `text` without the items under `#[cfg(test)]`: a `mod x;` up to its `;`, anything else up
/// to the end of its braces.
fn without_tests(text: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let (semi, brace) = (item.find(';'), item.find('{'));
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (Some(s), None) => s + 1,
            (_, Some(b)) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (i, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The identifiers after each `crate::` on `line`.
fn crate_paths(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .filter(|(at, _)| {
            // `$crate::` and names ending in `crate` are not this crate's paths.
            !line[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, _)| {
            let name = &line[at + "crate::".len()..];
            let end = name
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            &name[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The module `name` names at the root: itself if it is a module, else the module the root
/// re-exports it from.
fn module_of<'a>(
    name: &'a str,
    modules: &'a BTreeSet<String>,
    reexports: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    if modules.contains(name) {
        Some(name)
    } else {
        reexports.get(name).map(String::as_str)
    }
}

/// The modules a crate root declares, and what it re-exports from which.
fn root_items(src: &Path) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        let Ok(text) = std::fs::read_to_string(src.join(root)) else {
            continue;
        };
        let text = without_tests(&text);
        for line in text.lines().map(str::trim) {
            let declared = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "));
            if let Some(name) = declared.and_then(|d| d.strip_suffix(';')) {
                modules.insert(name.to_string());
            }
        }
        // `pub use module::{A, B};` or `pub use module::A;`, possibly over several lines.
        for statement in text.split("pub use ").skip(1) {
            let statement = statement.split(';').next().unwrap_or("");
            let Some((module, names)) = statement.split_once("::") else {
                continue;
            };
            for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if !name.is_empty() {
                    reexports.insert(name.to_string(), module.trim().to_string());
                }
            }
        }
    }
    reexports.retain(|_, module| modules.contains(module));
    (modules, reexports)
}

/// The files of modules declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;` in
/// `x/mod.rs` is `x/tests.rs` or `x/tests/mod.rs`).
fn test_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let item = rest.trim_start();
            let item = item.strip_prefix("pub ").unwrap_or(item);
            let Some(declared) = item.strip_prefix("mod ") else {
                continue;
            };
            let name: String = declared
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !declared[name.len()..].trim_start().starts_with(';') {
                continue;
            }
            let stem = file.file_stem().unwrap();
            let dir = if ["mod", "lib", "main"].iter().any(|s| stem == *s) {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            found.insert(dir.join(format!("{name}.rs")));
            found.insert(dir.join(&name).join("mod.rs"));
        }
    }
    found
}

/// The uses between the top-level modules of the crate at `dir`.
fn uses(dir: &Path) -> Uses {
    let src = dir.join("src");
    let (modules, reexports) = root_items(&src);
    let mut found = Uses::new();
    let mut files = Vec::new();
    let mut pending = vec![src.clone()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let test_only = test_files(&files);
    for file in files.iter().filter(|f| !test_only.contains(*f)) {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let from = Path::new(first)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !modules.contains(&from) {
            continue; // the crate root itself, or a file no module declares
        }
        let text = without_tests(&std::fs::read_to_string(file).unwrap());
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for name in crate_paths(code) {
                let Some(to) = module_of(name, &modules, &reexports) else {
                    continue;
                };
                if to != from {
                    found
                        .entry((from.clone(), to.to_string()))
                        .or_insert_with(|| format!("{}:{}", file.display(), number + 1));
                }
            }
        }
    }
    found
}

/// The circles of `uses`: its strongly connected components of more than one module,
/// each sorted, in order.
fn circles(uses: &Uses) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = uses.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::from([from.clone()]);
        let mut pending = vec![from.clone()];
        while let Some(at) = pending.pop() {
            for (a, b) in uses.keys() {
                if *a == at && seen.insert(b.clone()) {
                    pending.push(b.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for (node, from_it) in &reached {
        let circle: Vec<String> = from_it
            .iter()
            .filter(|other| reached[other].contains(*node))
            .cloned()
            .collect();
        if circle.len() > 1 {
            found.insert(circle);
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut report = String::new();
    let mut checked = 0;
    for dir in crates(root) {
        let uses = uses(&dir);
        checked += 1;
        for circle in circles(&uses) {
            report.push_str(&format!("{}: {}\n", dir.display(), circle.join(", ")));
            for ((a, b), at) in &uses {
                if circle.contains(a) && circle.contains(b) {
                    report.push_str(&format!("    {a} uses {b} at {at}\n"));
                }
            }
        }
    }
    assert!(
        checked >= 10,
        "the workspace's crates were found: {checked}"
    );
    assert!(report.is_empty(), "import circles:\n{report}");
}

#[test]
fn a_circle_is_found_through_paths_and_re_exports_and_not_through_tests_or_comments() {
    let dir = std::env::temp_dir().join(format!("import-cycles-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\nmod c;\npub use b::{Thing, Other};\n",
    )
    .unwrap();
    std::fs::write(src.join("a.rs"), "use crate::Thing;\n// crate::c\n").unwrap();
    std::fs::write(
        src.join("b/mod.rs"),
        "pub struct Thing;\npub struct Other;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("c.rs"), "use crate::b::Other;\n").unwrap();
    // a -> b (a re-export), c -> b; b -> a only in its tests: no circle.
    let found = uses(&dir);
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        [("a".into(), "b".into()), ("c".into(), "b".into())]
    );
    assert!(circles(&found).is_empty());
    // b -> c in its code: b and c form a circle; a stays out of it.
    std::fs::write(
        src.join("b/mod.rs"),
        "pub struct Thing;\npub struct Other;\nfn f() { crate::c::g() }\n",
    )
    .unwrap();
    let found = uses(&dir);
    assert_eq!(circles(&found), [vec!["b".to_string(), "c".to_string()]]);
    let _ = std::fs::remove_dir_all(dir);
}
