//! `protocols` on a plaintext entrypoint: the default, each value in YAML and TOML, the
//! effective config, and every bad value refused where it is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::fs;

use strait_config::{parse_str, Config, Format, PlaintextProtocols};

fn parse(text: &str, format: Format) -> Config {
    parse_str(text, format, "strait").unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
}

/// A plaintext entrypoint `web` with `protocols` written as `value`, on line 4.
fn with_protocols(value: &str) -> String {
    format!("entrypoints:\n  web:\n    address: 127.0.0.1:0\n    protocols: {value}\n")
}

#[test]
fn both_protocols_are_the_default_and_are_not_printed() {
    let config = parse(
        "entrypoints:\n  web: { address: 127.0.0.1:0 }\n",
        Format::Yaml,
    );
    let web = &config.entrypoints["web"];
    assert_eq!(web.protocols, PlaintextProtocols::Http11AndH2c);
    assert!(web.protocols.http11() && web.protocols.h2c());
    assert!(
        !config.to_yaml().contains("protocols"),
        "{}",
        config.to_yaml()
    );

    // Both written out, in either order, is the default too.
    for value in ["[http/1.1, h2c]", "[h2c, http/1.1]"] {
        let config = parse(&with_protocols(value), Format::Yaml);
        assert_eq!(
            config.entrypoints["web"].protocols,
            PlaintextProtocols::Http11AndH2c
        );
        assert!(!config.to_yaml().contains("protocols"), "{value}");
    }
}

#[test]
fn one_protocol_locks_the_entrypoint_in_yaml_and_toml() {
    for (value, toml_value, want, http11, h2c) in [
        (
            "[http/1.1]",
            r#"["http/1.1"]"#,
            PlaintextProtocols::Http11,
            true,
            false,
        ),
        ("[h2c]", r#"["h2c"]"#, PlaintextProtocols::H2c, false, true),
    ] {
        let yaml = parse(&with_protocols(value), Format::Yaml);
        let toml = parse(
            &format!("[entrypoints.web]\naddress = \"127.0.0.1:0\"\nprotocols = {toml_value}\n"),
            Format::Toml,
        );
        for config in [&yaml, &toml] {
            let protocols = config.entrypoints["web"].protocols;
            assert_eq!(protocols, want, "{value}");
            assert_eq!((protocols.http11(), protocols.h2c()), (http11, h2c));
        }
        let printed = yaml.to_yaml();
        assert!(
            printed.contains(&format!(
                "  web:\n    address: 127.0.0.1:0\n    protocols: {value}\n"
            )),
            "{printed}"
        );
        assert_eq!(toml.to_yaml(), printed);
        let again = parse(&printed, Format::Yaml);
        assert_eq!(again.entrypoints["web"].protocols, want);
        assert_eq!(again.to_yaml(), printed);
    }
}

#[test]
fn empty_protocols_are_refused() {
    let err = one(&with_protocols("[]"));
    assert_at(&err, 4, 16, "`protocols` in entrypoint `web` is empty");
    assert_hint(&err, "list `http/1.1`, `h2c` or both");
}

#[test]
fn unknown_protocols_are_refused_with_a_suggestion() {
    let err = one(&with_protocols("[http/1.1, h2]"));
    assert_at(
        &err,
        4,
        27,
        "unknown protocol `h2` in `protocols` in entrypoint `web`",
    );
    assert_hint(&err, "as `h2c`; `h2` is HTTP/2 over TLS (`tls.alpn`)");

    let err = one(&with_protocols("[http/1]"));
    assert_at(&err, 4, 17, "unknown protocol `http/1`");
    assert_hint(
        &err,
        "did you mean `http/1.1`? the protocols are `http/1.1` and `h2c`",
    );

    let err = one(&with_protocols("[grpc]"));
    assert_at(&err, 4, 17, "unknown protocol `grpc`");
    assert_hint(&err, "the protocols are `http/1.1` and `h2c`");
}

#[test]
fn a_protocol_listed_twice_is_refused() {
    let err = one(&with_protocols("[h2c, http/1.1, h2c]"));
    assert_at(
        &err,
        4,
        32,
        "`h2c` is listed twice in `protocols` in entrypoint `web`",
    );
    assert_hint(&err, "list each protocol once");
}

#[test]
fn protocols_must_be_a_list_of_strings() {
    let err = one(&with_protocols("h2c"));
    assert_at(
        &err,
        4,
        16,
        "expected a list for `protocols` in entrypoint `web`, found",
    );
    let err = one(&with_protocols("[1.1]"));
    assert_at(
        &err,
        4,
        17,
        "expected a string for `protocols` in entrypoint `web`",
    );
}

#[test]
fn protocols_on_a_tls_entrypoint_point_at_alpn() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["api.pem", "api.key"] {
        fs::write(dir.path().join(file), "not checked here\n").unwrap();
    }
    let text = "\
entrypoints:
  websecure:
    address: 127.0.0.1:0
    protocols: [http/1.1]
    tls:
      certificates:
        - { cert_file: api.pem, key_file: api.key }
";
    let file = dir.path().join("strait.yaml").display().to_string();
    let errors = parse_str(text, Format::Yaml, &file).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let err = &errors[0];
    assert_at(
        err,
        4,
        5,
        "`protocols` in entrypoint `websecure` applies only to plaintext entrypoints, and this \
         one has `tls`",
    );
    assert_hint(err, "choose the protocols with `tls.alpn`");
}

#[test]
fn a_bad_protocols_value_does_not_hide_other_problems() {
    let text = "\
entrypoints:
  web:
    address: 127.0.0.1:0
    protocols: []
    max_connection_age: never
";
    let errors = errors(text, Format::Yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(
        &errors[0],
        4,
        16,
        "`protocols` in entrypoint `web` is empty",
    );
    assert_at(&errors[1], 5, 25, "`never` is not a duration");
}
