//! Reading config files from disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use strait_config::load;

#[test]
fn loads_yaml_and_toml_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("strait.yml");
    fs::write(&yaml, "entrypoints:\n  web: { address: 127.0.0.1:0 }\n").unwrap();
    let toml = dir.path().join("strait.toml");
    fs::write(&toml, "[entrypoints.web]\naddress = \"127.0.0.1:0\"\n").unwrap();
    let from_yaml = load(&yaml).unwrap();
    let from_toml = load(&toml).unwrap();
    assert_eq!(from_yaml.to_yaml(), from_toml.to_yaml());
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strait.yaml");
    fs::write(&path, "entrypoints:\n  web: { adress: 127.0.0.1:0 }\n").unwrap();
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[1].file, path.display().to_string());
    assert!(errors[1]
        .to_string()
        .starts_with(&format!("{}:2:10: unknown key `adress`", path.display())));
}

#[test]
fn unknown_extension_is_one_error_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strait.json");
    fs::write(&path, "{}").unwrap();
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (1, 1));
    let hint = errors[0].hint.as_deref().unwrap();
    assert!(hint.contains(".yaml") && hint.contains(".yml") && hint.contains(".toml"));
}

#[test]
fn unreadable_file_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.yaml");
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (1, 1));
    assert!(
        errors[0].message.starts_with("cannot read the file:"),
        "{}",
        errors[0]
    );
}
