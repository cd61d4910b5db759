//! Every config in `examples/` is valid and starts (on free ports, so the test can run
//! anywhere), and the YAML and TOML versions say the same thing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    // The TLS example needs its certificates, made the way its comments tell a user to.
    let made = std::process::Command::new(dir.join("certs/make-certs.sh"))
        .status()
        .expect("examples/certs/make-certs.sh runs (needs openssl)");
    assert!(made.success());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| strait_config::Format::from_path(p).is_some())
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "no example configs found in {}",
        dir.display()
    );
    files
}

#[tokio::test]
async fn every_example_config_loads_and_starts() {
    for file in examples() {
        let mut config = strait_config::load(&file).unwrap_or_else(|errors| {
            panic!(
                "{} is invalid:\n{}",
                file.display(),
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        for entrypoint in config.entrypoints.values_mut() {
            entrypoint.address.set_port(0);
        }
        if let Some(admin) = &mut config.admin {
            admin.address.set_port(0);
        }
        let running = strait_app::start(config).await.expect("example starts");
        assert!(!running.entrypoints().is_empty());
        assert!(running.shutdown(std::time::Duration::from_secs(5)).await);
    }
}

#[test]
fn yaml_and_toml_examples_agree() {
    let load = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        strait_config::load(&path).unwrap().to_yaml()
    };
    assert_eq!(load("strait.yaml"), load("strait.toml"));
}
