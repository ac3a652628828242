//! The README's hello game, as a user would make it: its six files (the blocks marked
//! `<!-- hello: PATH -->`) in a crate of their own outside this workspace, depending on the
//! engine by path. It must build without the engine's optional parts, pass its own test, take
//! the README's added message (the blocks marked `<!-- hello-add: PATH [WHERE] -->`) and pass
//! its test too, and fail to build, naming the entries, when one of its ids clashes with the
//! engine's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

/// The README's blocks marked `<!-- MARKER HEADER -->`: (header, text), each text without
/// the indentation of its fence (a block in a list is indented), ending in one newline.
fn marked_blocks(marker: &str) -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let open = format!("<!-- {marker} ");
    let mut blocks = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        let (header, after) = rest.split_once(" -->").expect("a closed marker");
        let after = after.trim_start_matches('\n');
        let fence = after.lines().next().expect("a fence line");
        let indent = fence.len() - fence.trim_start().len();
        let body = &after[fence.len() + 1..];
        let end = body.find("```").expect("a closing fence");
        let text: String = body[..end]
            .lines()
            .map(|line| format!("{}\n", line.get(indent..).unwrap_or("")))
            .collect();
        blocks.push((header.to_string(), format!("{}\n", text.trim_end())));
        rest = &body[end..];
    }
    blocks
}

/// The files of the README's hello game: (path, contents).
fn files() -> Vec<(String, String)> {
    marked_blocks("hello:")
}

/// The README's steps to add a message to the game: (path, where, text), `where` being
/// empty (at the end of the file, or a new file), `inside enum MessageId`, or `replacing
/// LINE`.
fn additions() -> Vec<(String, String, String)> {
    marked_blocks("hello-add:")
        .into_iter()
        .map(|(header, text)| {
            let (path, place) = header.split_once(' ').unwrap_or((&header, ""));
            (path.to_string(), place.to_string(), text)
        })
        .collect()
}

/// Carries out one step of [`additions`] in the game at `dir`.
fn apply(dir: &Path, path: &str, place: &str, text: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let before = std::fs::read_to_string(&file).unwrap_or_default();
    let after = if place.is_empty() {
        format!("{before}\n{text}")
    } else if place == "inside enum MessageId" {
        let start = before.find("enum MessageId {").expect("enum MessageId");
        let close = start + before[start..].find("\n}").expect("its closing brace") + 1;
        format!("{}{text}{}", &before[..close], &before[close..])
    } else if let Some(line) = place.strip_prefix("replacing ") {
        let found = before
            .lines()
            .find(|l| l.trim() == line)
            .unwrap_or_else(|| panic!("no line {line:?} in {path}"));
        before.replacen(&format!("{found}\n"), text, 1)
    } else {
        panic!("a step of the README says where, as this test does not know: {place:?}");
    };
    std::fs::write(file, after).unwrap();
}

/// Writes the game into `dir`, its dependencies on this repository pointed at it.
fn write_game(dir: &Path, files: &[(String, String)]) {
    let repo = env!("CARGO_MANIFEST_DIR");
    for (path, contents) in files {
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let contents = contents.replace("\"../world-server", &format!("\"{repo}"));
        std::fs::write(target, contents).unwrap();
    }
    // The versions this repository is tested with, and no download.
    std::fs::copy(Path::new(repo).join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    let target: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hello-game");
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_readme_hello_game_builds_outside_the_workspace_and_passes_its_test() {
    let files = files();
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "Cargo.toml",
            "proto/hello.proto",
            "build.rs",
            "src/lib.rs",
            "src/main.rs",
            "tests/shout.rs"
        ]
    );
    let game_lines = files
        .iter()
        .filter(|(p, _)| p.starts_with("src/"))
        .map(|(_, c)| c.lines().count())
        .sum::<usize>();
    assert!(game_lines <= 40, "the game is {game_lines} lines");
    let test_lines = files[5].1.lines().count();
    assert!(test_lines <= 20, "its test is {test_lines} lines");

    let dir = common::fresh_dir().join("hello");
    write_game(&dir, &files);
    let tested = cargo(&dir, &["test"]);
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(
        text(&tested).contains("test everyone_hears_a_shout ... ok"),
        "{}",
        text(&tested)
    );
    // It pays only for what it uses.
    let tree = cargo(&dir, &["tree", "-e", "normal"]);
    let tree = text(&tree);
    for absent in ["rusqlite", "postgres", "async-nats"] {
        assert!(!tree.contains(absent), "{absent} is built:\n{tree}");
    }

    // A message added as the README says.
    let steps = additions();
    assert_eq!(steps.len(), 5, "the README's steps: {steps:?}");
    for (path, place, text) in &steps {
        apply(&dir, path, place, text);
    }
    let tested = cargo(&dir, &["test"]);
    let said = text(&tested);
    assert!(tested.status.success(), "{said}");
    for test in ["everyone_hears_a_shout", "a_player_hears_how_many_are_here"] {
        assert!(said.contains(&format!("test {test} ... ok")), "{said}");
    }

    // An id the engine has fails the build, naming both.
    let proto = dir.join("proto/hello.proto");
    let clashing = std::fs::read_to_string(&proto)
        .unwrap()
        .replace("S2C_HEARD = 1100", "S2C_HEARD = 1000");
    std::fs::write(&proto, clashing).unwrap();
    let built = cargo(&dir, &["build"]);
    let said = text(&built);
    assert!(!built.status.success(), "{said}");
    assert!(
        said.contains("S2C_HEARD") && said.contains("1000"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}
