//! Every bad rules file in `tests/data/invalid/` reports exactly the diagnostics in its
//! `.expect` sidecar (place and message), all at once; lints in `tests/data/lints.toml`.

use std::path::Path;

use preflightd::rules::load_path;

fn rendered(path: &Path) -> (bool, Vec<String>) {
    let loaded = load_path(path);
    let prefix = path.display().to_string();
    let lines = loaded
        .diagnostics
        .iter()
        .map(|d| d.to_string().trim_start_matches(&prefix).to_owned())
        .collect();
    (loaded.rules.is_some(), lines)
}

fn expected(path: &Path) -> Vec<String> {
    let expect = path.with_extension("expect");
    std::fs::read_to_string(&expect)
        .unwrap_or_else(|e| panic!("{}: {e}", expect.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_invalid_file_reports_every_error_with_its_place() {
    let mut files: Vec<_> = std::fs::read_dir("tests/data/invalid")
        .expect("tests/data/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "only {} invalid files", files.len());
    for file in files {
        let (loaded, got) = rendered(&file);
        assert!(!loaded, "{}: loaded despite errors", file.display());
        assert!(
            got.iter().any(|line| !line.contains("warning:")),
            "{}: no error reported",
            file.display()
        );
        assert_eq!(got, expected(&file), "{}", file.display());
    }
}

#[test]
fn a_file_with_several_mistakes_reports_all_of_them() {
    let (_, got) = rendered(Path::new("tests/data/invalid/several.toml"));
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn lints_are_warnings_and_the_rules_still_load() {
    let path = Path::new("tests/data/lints.toml");
    let (loaded, got) = rendered(path);
    assert!(loaded, "lints must not refuse the rules");
    assert!(
        got.iter().all(|line| line.contains(": warning: ")),
        "{got:#?}"
    );
    assert_eq!(got, expected(path));
}

#[test]
fn the_shipped_example_rules_are_clean() {
    let loaded = load_path(Path::new("rules"));
    assert!(loaded.rules.is_some(), "{:#?}", loaded.diagnostics);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
}

#[test]
fn a_directory_is_read_in_file_name_order_as_one_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write(
        "20-second.toml",
        "[[rule]]\nname = \"second\"\norigins = [\"https://b.example.com\"]\n",
    );
    write(
        "10-first.toml",
        "[settings]\ndebug = true\n\n[[rule]]\nname = \"first\"\norigins = [\"https://a.example.com\"]\n",
    );
    write(".hidden.toml", "this is not toml");
    write("notes.txt", "not rules");
    std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
    let loaded = load_path(dir.path());
    let rules = loaded
        .rules
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let names: Vec<_> = rules.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    assert!(rules.settings.debug);
}

#[test]
fn names_and_settings_are_unique_across_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write(
        "a.toml",
        "[settings]\ndebug = true\n\n[[rule]]\nname = \"web\"\norigins = [\"https://a.example.com\"]\n",
    );
    write(
        "b.toml",
        "[settings]\ndebug = false\n\n[[rule]]\nname = \"web\"\norigins = [\"https://b.example.com\"]\n",
    );
    let loaded = load_path(dir.path());
    assert!(loaded.rules.is_none());
    let b = dir.path().join("b.toml").display().to_string();
    let a = dir.path().join("a.toml").display().to_string();
    let got: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        got,
        [
            format!("{b}:1:2: settings: [settings] appears again; first at {a}:1:2"),
            format!("{b}:4:1: rule \"web\": duplicate rule name; first used at {a}:4:1"),
        ]
    );
}

#[test]
fn a_missing_path_or_an_empty_directory_is_an_error() {
    let loaded = load_path(Path::new("tests/data/does-not-exist"));
    assert!(loaded.rules.is_none());
    assert!(
        loaded.diagnostics[0]
            .to_string()
            .starts_with("tests/data/does-not-exist: cannot read: ")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = load_path(dir.path());
    assert_eq!(
        loaded.diagnostics[0].to_string(),
        format!(
            "{}: no *.toml files in this directory",
            dir.path().display()
        )
    );
}
