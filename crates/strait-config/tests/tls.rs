//! TLS settings: entrypoint termination and mTLS, `client_cert_san`, https:// upstreams.
//! Certificate paths must name readable files, so each test writes them into a temp dir
//! (contents do not matter here) and names the config file inside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use strait_config::{
    load, parse_str, AlpnProtocol, CertificateFiles, ClientAuth, ClientAuthMode, Config,
    ConfigError, FaultDelay, Format, ServerTls, TlsFault, TlsFaultAbort, TlsVersion,
    UpstreamScheme, UpstreamTls,
};
use tempfile::TempDir;

const FILES: &[&str] = &[
    "certs/api.pem",
    "certs/api.key",
    "certs/other.pem",
    "certs/other.key",
    "certs/clients-ca.pem",
    "certs/internal-ca.pem",
    "certs/client.pem",
    "certs/client.key",
];

/// A temp dir holding every file in [`FILES`].
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("certs")).unwrap();
        for file in FILES {
            fs::write(dir.path().join(file), "not checked here\n").unwrap();
        }
        Fixture { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The name of a config file in the temp dir (it need not exist for `parse_str`).
    fn file(&self, format: Format) -> String {
        let name = match format {
            Format::Yaml => "strait.yaml",
            Format::Toml => "strait.toml",
        };
        self.path(name).display().to_string()
    }

    fn parse(&self, text: &str, format: Format) -> Config {
        parse_str(text, format, &self.file(format))
            .unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
    }

    fn errors(&self, text: &str) -> Vec<ConfigError> {
        match parse_str(text, Format::Yaml, &self.file(Format::Yaml)) {
            Ok(config) => panic!("accepted:\n{text}\nas:\n{}", config.to_yaml()),
            Err(errors) => errors,
        }
    }

    /// The only error in a YAML text.
    fn one(&self, text: &str) -> ConfigError {
        let mut errors = self.errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.remove(0)
    }
}

/// A valid TLS entrypoint; `lines` go into its `tls` mapping from line 7, indented by 6.
fn with_tls(lines: &str) -> String {
    format!(
        "\
entrypoints:
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates:
        - {{ cert_file: certs/api.pem, key_file: certs/api.key }}
{lines}"
    )
}

/// A valid https service; `lines` go into its `tls` mapping from line 5, indented by 6.
fn with_service_tls(lines: &str) -> String {
    format!(
        "\
services:
  s:
    servers: [https://api.internal:8443]
    tls:
{lines}"
    )
}

// === Valid configs ===

const FULL_YAML: &str = r#"
entrypoints:
  web:
    address: 0.0.0.0:8080
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates:
        - { cert_file: certs/api.pem, key_file: certs/api.key }
        - { cert_file: certs/other.pem, key_file: certs/other.key, default: true }
      alpn: [h2]
      sni_strict: true
      min_version: 1.3
      cipher_suites: [TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384]
      handshake_timeout: 5s
      client_auth:
        mode: require
        ca_file: certs/clients-ca.pem
        forward_header: X-Forwarded-Client-Cert
      fault: { delay: { duration: 2s, percent: 20 } }
routers:
  orders:
    match: { client_cert_san: spiffe://example.org/orders }
    service: orders
services:
  orders:
    servers:
      - https://api.internal:8443
      - { url: https://10.0.0.1, weight: 2 }
    connect_timeout: 2s
    tls:
      alpn: [h2]
      ca_file: certs/internal-ca.pem
      server_name: API.internal
      cert_file: certs/client.pem
      key_file: certs/client.key
      insecure_skip_verify: false
      fault:
        abort: { percent: 10 }
        delay: { duration: 150ms, percent: 0.5 }
  plain:
    servers: [h2c://127.0.0.1:50051]
"#;

const FULL_TOML: &str = r#"
[entrypoints.web]
address = "0.0.0.0:8080"

[entrypoints.websecure]
address = "0.0.0.0:8443"

[entrypoints.websecure.tls]
alpn = ["h2"]
sni_strict = true
min_version = "1.3"
cipher_suites = ["TLS13_AES_128_GCM_SHA256", "TLS13_AES_256_GCM_SHA384"]
handshake_timeout = "5s"

[[entrypoints.websecure.tls.certificates]]
cert_file = "certs/api.pem"
key_file = "certs/api.key"

[[entrypoints.websecure.tls.certificates]]
cert_file = "certs/other.pem"
key_file = "certs/other.key"
default = true

[entrypoints.websecure.tls.client_auth]
mode = "require"
ca_file = "certs/clients-ca.pem"
forward_header = "x-forwarded-client-cert"

[entrypoints.websecure.tls.fault.delay]
duration = "2s"
percent = 20

[routers.orders]
match = { client_cert_san = "spiffe://example.org/orders" }
service = "orders"

[[services.orders.servers]]
url = "https://api.internal:8443"

[[services.orders.servers]]
url = "https://10.0.0.1"
weight = 2

[services.orders]
connect_timeout = "2s"

[services.orders.tls]
alpn = ["h2"]
ca_file = "certs/internal-ca.pem"
server_name = "api.internal"
cert_file = "certs/client.pem"
key_file = "certs/client.key"
fault = { abort = { percent = 10 }, delay = { duration = "150ms", percent = 0.5 } }

[services.plain]
servers = ["h2c://127.0.0.1:50051"]
"#;

/// `{dir}` stands for the temp dir.
const FULL_EFFECTIVE: &str = r#"drain_timeout: 30s
lifecycle:
  accept_grace: 0s
entrypoints:
  web:
    address: 0.0.0.0:8080
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates:
        - cert_file: {dir}/certs/api.pem
          key_file: {dir}/certs/api.key
          default: false
        - cert_file: {dir}/certs/other.pem
          key_file: {dir}/certs/other.key
          default: true
      alpn: [h2]
      sni_strict: true
      min_version: "1.3"
      cipher_suites: [TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384]
      handshake_timeout: 5s
      client_auth:
        mode: require
        ca_file: {dir}/certs/clients-ca.pem
        forward_header: x-forwarded-client-cert
      fault:
        delay:
          duration: 2s
          percent: 20
routers:
  orders:
    entrypoints: [web, websecure]
    match:
      client_cert_san: spiffe://example.org/orders
    service: orders
services:
  orders:
    servers:
      - url: https://api.internal:8443
        weight: 1
      - url: https://10.0.0.1:443
        weight: 2
    connect_timeout: 2s
    tls:
      alpn: [h2]
      ca_file: {dir}/certs/internal-ca.pem
      server_name: api.internal
      cert_file: {dir}/certs/client.pem
      key_file: {dir}/certs/client.key
      insecure_skip_verify: false
      fault:
        abort:
          percent: 10
        delay:
          duration: 150ms
          percent: 0.5
  plain:
    servers:
      - url: h2c://127.0.0.1:50051
        weight: 1
    connect_timeout: 5s
middlewares: {}
"#;

#[test]
fn every_tls_setting_is_read() {
    let fx = Fixture::new();
    let config = fx.parse(FULL_YAML, Format::Yaml);
    assert!(config.entrypoints["web"].tls.is_none());
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    let want = ServerTls {
        certificates: vec![
            CertificateFiles {
                cert_file: fx.path("certs/api.pem"),
                key_file: fx.path("certs/api.key"),
                default: false,
            },
            CertificateFiles {
                cert_file: fx.path("certs/other.pem"),
                key_file: fx.path("certs/other.key"),
                default: true,
            },
        ],
        alpn: vec![AlpnProtocol::H2],
        sni_strict: true,
        min_version: TlsVersion::Tls13,
        cipher_suites: vec![
            "TLS13_AES_128_GCM_SHA256".to_owned(),
            "TLS13_AES_256_GCM_SHA384".to_owned(),
        ],
        handshake_timeout: Duration::from_secs(5),
        client_auth: Some(ClientAuth {
            mode: ClientAuthMode::Require,
            ca_file: Some(fx.path("certs/clients-ca.pem")),
            forward_header: Some(http::HeaderName::from_static("x-forwarded-client-cert")),
        }),
        fault: Some(FaultDelay {
            duration: Duration::from_secs(2),
            percent: 20.0,
        }),
    };
    assert_eq!(*tls, want);
    assert_eq!(
        config.routers["orders"].matcher.client_cert_san.as_deref(),
        Some("spiffe://example.org/orders")
    );
    let orders = &config.services["orders"];
    assert_eq!(orders.servers[0].url.scheme, UpstreamScheme::Https);
    assert_eq!(orders.servers[0].url.port, 8443);
    assert_eq!(
        orders.tls,
        Some(UpstreamTls {
            alpn: vec![AlpnProtocol::H2],
            ca_file: Some(fx.path("certs/internal-ca.pem")),
            server_name: Some("api.internal".to_owned()),
            client_cert: Some(CertificateFiles {
                cert_file: fx.path("certs/client.pem"),
                key_file: fx.path("certs/client.key"),
                default: false,
            }),
            insecure_skip_verify: false,
            fault: Some(TlsFault {
                abort: Some(TlsFaultAbort { percent: 10.0 }),
                delay: Some(FaultDelay {
                    duration: Duration::from_millis(150),
                    percent: 0.5,
                }),
            }),
        })
    );
    assert_eq!(orders.connect_timeout, Duration::from_secs(2));
    assert!(config.services["plain"].tls.is_none());
    assert_eq!(
        config.services["plain"].connect_timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn the_full_tls_config_in_toml_is_the_same_config() {
    let fx = Fixture::new();
    let yaml = fx.parse(FULL_YAML, Format::Yaml);
    let toml = fx.parse(FULL_TOML, Format::Toml);
    assert_eq!(toml.to_yaml(), yaml.to_yaml());
    assert_eq!(
        toml.entrypoints["websecure"].tls,
        yaml.entrypoints["websecure"].tls
    );
    assert_eq!(toml.services["orders"].tls, yaml.services["orders"].tls);
    let dir = fx.dir.path().display().to_string();
    assert_eq!(yaml.to_yaml(), FULL_EFFECTIVE.replace("{dir}", &dir));
}

#[test]
fn the_effective_tls_config_parses_back_to_itself() {
    let fx = Fixture::new();
    let config = fx.parse(FULL_YAML, Format::Yaml);
    let yaml = config.to_yaml();
    // The paths in it are absolute, so any file name will do.
    let again = parse_str(&yaml, Format::Yaml, "elsewhere/effective.yaml")
        .unwrap_or_else(|errors| panic!("{yaml}\n{errors:#?}"));
    assert_eq!(again.to_yaml(), yaml);
    assert_eq!(
        again.entrypoints["websecure"].tls,
        config.entrypoints["websecure"].tls
    );
    assert_eq!(again.services["orders"].tls, config.services["orders"].tls);
    assert_eq!(
        again.routers["orders"].matcher.client_cert_san,
        config.routers["orders"].matcher.client_cert_san
    );
}

#[test]
fn tls_defaults_are_filled_in_and_shown() {
    let fx = Fixture::new();
    let config = fx.parse(&with_tls(""), Format::Yaml);
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    assert_eq!(tls.alpn, [AlpnProtocol::H2, AlpnProtocol::Http11]);
    assert!(!tls.sni_strict);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert!(tls.cipher_suites.is_empty());
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
    assert_eq!(tls.client_auth, None);
    assert!(!tls.certificates[0].default);

    let dir = fx.dir.path().display().to_string();
    let want = format!(
        "    tls:
      certificates:
        - cert_file: {dir}/certs/api.pem
          key_file: {dir}/certs/api.key
          default: false
      alpn: [h2, http/1.1]
      sni_strict: false
      min_version: \"1.2\"
      handshake_timeout: 10s
routers: {{}}
"
    );
    let yaml = config.to_yaml();
    assert!(yaml.contains(&want), "{yaml}");

    let config = fx.parse(&with_service_tls("      {}\n"), Format::Yaml);
    let tls = config.services["s"].tls.as_ref().unwrap();
    assert_eq!(tls.alpn, [AlpnProtocol::H2, AlpnProtocol::Http11]);
    assert_eq!(tls.ca_file, None);
    assert_eq!(tls.server_name, None);
    assert_eq!(tls.client_cert, None);
    assert!(!tls.insecure_skip_verify);
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("    tls:\n      alpn: [h2, http/1.1]\n      insecure_skip_verify: false\n"),
        "{yaml}"
    );
}

#[test]
fn min_version_is_read_quoted_or_as_a_number() {
    let fx = Fixture::new();
    for (value, want) in [
        ("\"1.2\"", TlsVersion::Tls12),
        ("'1.3'", TlsVersion::Tls13),
        ("1.2", TlsVersion::Tls12),
        ("1.3", TlsVersion::Tls13),
    ] {
        let config = fx.parse(
            &with_tls(&format!("      min_version: {value}\n")),
            Format::Yaml,
        );
        let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
        assert_eq!(tls.min_version, want, "{value}");
    }
    let toml = "[entrypoints.websecure]\naddress = \"0.0.0.0:8443\"\n\
                [entrypoints.websecure.tls]\nmin_version = 1.3\n\
                certificates = [{ cert_file = \"certs/api.pem\", key_file = \"certs/api.key\" }]\n";
    let config = fx.parse(toml, Format::Toml);
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    assert_eq!(tls.min_version, TlsVersion::Tls13);
}

#[test]
fn tls13_suites_with_min_version_1_2_are_fine() {
    let fx = Fixture::new();
    let config = fx.parse(
        &with_tls("      cipher_suites: [TLS13_CHACHA20_POLY1305_SHA256]\n"),
        Format::Yaml,
    );
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    assert_eq!(tls.cipher_suites, ["TLS13_CHACHA20_POLY1305_SHA256"]);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    // With 1.3, one TLS 1.3 suite among TLS 1.2 ones is enough.
    fx.parse(
        &with_tls(
            "      min_version: \"1.3\"\n      cipher_suites: \
             [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256]\n",
        ),
        Format::Yaml,
    );
}

#[test]
fn client_auth_modes() {
    let fx = Fixture::new();
    let config = fx.parse(
        &with_tls("      client_auth: { mode: none }\n"),
        Format::Yaml,
    );
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    assert_eq!(
        tls.client_auth,
        Some(ClientAuth {
            mode: ClientAuthMode::None,
            ca_file: None,
            forward_header: None,
        })
    );
    assert!(config
        .to_yaml()
        .contains("      client_auth:\n        mode: none\n"));

    let config = fx.parse(
        &with_tls("      client_auth: { mode: request, ca_file: certs/clients-ca.pem }\n"),
        Format::Yaml,
    );
    let auth = config.entrypoints["websecure"]
        .tls
        .as_ref()
        .unwrap()
        .client_auth
        .as_ref()
        .unwrap();
    assert_eq!(auth.mode, ClientAuthMode::Request);
    assert_eq!(auth.ca_file, Some(fx.path("certs/clients-ca.pem")));
}

#[test]
fn client_cert_san_needs_one_entrypoint_that_asks() {
    let fx = Fixture::new();
    // `web` is plaintext, but `websecure` asks: the router can match there.
    let text = "\
entrypoints:
  web: { address: 0.0.0.0:8080 }
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates: [{ cert_file: certs/api.pem, key_file: certs/api.key }]
      client_auth: { mode: request, ca_file: certs/clients-ca.pem }
routers:
  r: { match: { client_cert_san: orders.example.org }, service: s }
services:
  s: { servers: [h2c://127.0.0.1:1] }
";
    let config = fx.parse(text, Format::Yaml);
    assert_eq!(config.routers["r"].entrypoints, ["web", "websecure"]);
}

#[test]
fn https_servers_default_to_port_443() {
    let fx = Fixture::new();
    let config = fx.parse(
        "services:\n  s:\n    servers: [https://api.internal, 'https://[::1]', https://a:8443]\n",
        Format::Yaml,
    );
    let servers = &config.services["s"].servers;
    let found: Vec<_> = servers
        .iter()
        .map(|s| (s.url.scheme, s.url.host.as_str(), s.url.port))
        .collect();
    assert_eq!(
        found,
        [
            (UpstreamScheme::Https, "api.internal", 443),
            (UpstreamScheme::Https, "::1", 443),
            (UpstreamScheme::Https, "a", 8443),
        ]
    );
    // No `tls`: the defaults apply at runtime; nothing is invented here.
    assert!(config.services["s"].tls.is_none());
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("      - url: https://api.internal:443\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("      - url: \"https://[::1]:443\"\n"),
        "{yaml}"
    );
}

#[test]
fn insecure_skip_verify_is_allowed() {
    let fx = Fixture::new();
    let config = fx.parse(
        &with_service_tls("      insecure_skip_verify: true\n      server_name: 10.0.0.1\n"),
        Format::Yaml,
    );
    let tls = config.services["s"].tls.as_ref().unwrap();
    assert!(tls.insecure_skip_verify);
    assert_eq!(tls.server_name.as_deref(), Some("10.0.0.1"));
}

#[test]
fn tls_fault_percent_defaults_to_100() {
    let fx = Fixture::new();
    let config = fx.parse(
        &with_service_tls("      fault: { abort: {} }\n"),
        Format::Yaml,
    );
    let fault = config.services["s"].tls.as_ref().unwrap().fault.as_ref();
    assert_eq!(
        fault,
        Some(&TlsFault {
            abort: Some(TlsFaultAbort { percent: 100.0 }),
            delay: None,
        })
    );
    let yaml = config.to_yaml();
    assert!(
        yaml.contains("      fault:\n        abort:\n          percent: 100\n"),
        "{yaml}"
    );

    let config = fx.parse(
        &with_tls("      fault: { delay: { duration: 1m } }\n"),
        Format::Yaml,
    );
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    assert_eq!(
        tls.fault,
        Some(FaultDelay {
            duration: Duration::from_secs(60),
            percent: 100.0,
        })
    );
    // Zero percent is allowed: it keeps a rehearsal's settings in place, switched off.
    let config = fx.parse(
        &with_service_tls("      fault: { delay: { duration: 1s, percent: 0 } }\n"),
        Format::Yaml,
    );
    let fault = config.services["s"].tls.as_ref().unwrap().fault.as_ref();
    assert_eq!(fault.unwrap().delay.as_ref().unwrap().percent, 0.0);
}

#[test]
fn bad_service_tls_faults_are_located() {
    let fx = Fixture::new();
    // (line 5 of with_service_tls, column, message, hint)
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "      fault: {}\n",
            14,
            "`fault` in the TLS settings of service `s` injects nothing",
            "abort: { percent: 10 }",
        ),
        (
            "      fault: true\n",
            14,
            "expected a mapping for `fault` in the TLS settings of service `s`",
            "",
        ),
        (
            "      fault: { abort: { percent: 150 } }\n",
            34,
            "`percent` in `abort` in the TLS fault of service `s` must be 0 to 100, not 150",
            "",
        ),
        (
            "      fault: { abort: { percent: fifty } }\n",
            34,
            "expected a number for `percent` in `abort` in the TLS fault of service `s`",
            "",
        ),
        (
            "      fault: { abort: { percent: 10, grpc_status: UNAVAILABLE } }\n",
            38,
            "unknown key `grpc_status` in `abort` in the TLS fault of service `s`",
            "valid keys are `percent`",
        ),
        (
            "      fault: { abort: 10 }\n",
            23,
            "expected a mapping for `abort` in the TLS fault of service `s`",
            "",
        ),
        (
            "      fault: { delay: { percent: 5 } }\n",
            23,
            "missing `duration` in `delay` in the TLS fault of service `s`",
            "",
        ),
        (
            "      fault: { delay: { duration: 0s } }\n",
            35,
            "`duration` in `delay` in the TLS fault of service `s` is zero, which would delay nothing",
            "such as 2s",
        ),
        (
            "      fault: { delay: { duration: 2 } }\n",
            35,
            "expected a duration string for `duration` in `delay` in the TLS fault of service `s`",
            "250ms",
        ),
        (
            "      fault: { delay: { duration: 2s, percent: -1 } }\n",
            48,
            "`percent` in `delay` in the TLS fault of service `s` must be 0 to 100, not -1",
            "",
        ),
        (
            "      fault: { delay: { duration: 2s, every: 3 } }\n",
            39,
            "unknown key `every` in `delay` in the TLS fault of service `s`",
            "valid keys are `duration`, `percent`",
        ),
    ];
    for (lines, col, message, hint) in cases {
        let err = fx.one(&with_service_tls(lines));
        assert_at(&err, 5, *col, message);
        assert_hint(&err, hint);
    }

    // A misspelt key is reported, and so is the fault that is then empty.
    let errors = fx.errors(&with_service_tls(
        "      fault: { delai: { duration: 2s } }\n",
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(&errors[0], 5, 14, "injects nothing");
    assert_at(
        &errors[1],
        5,
        16,
        "unknown key `delai` in the TLS fault of service `s`",
    );
    assert_hint(&errors[1], "did you mean `delay`?");
}

#[test]
fn bad_entrypoint_tls_faults_are_located() {
    let fx = Fixture::new();
    // Line 7 of with_tls.
    let err = fx.one(&with_tls("      fault: { abort: { percent: 10 } }\n"));
    assert_at(
        &err,
        7,
        16,
        "`abort` in the TLS fault of entrypoint `websecure` is not available: entrypoints can \
         only delay handshakes",
    );
    assert_hint(&err, "aborting TLS handshakes is for services");
    // Both: the delay is fine, the abort is still refused.
    let err = fx.one(&with_tls(
        "      fault: { abort: { percent: 10 }, delay: { duration: 1s } }\n",
    ));
    assert_at(&err, 7, 16, "is not available");

    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "      fault: {}\n",
            14,
            "`fault` in the TLS settings of entrypoint `websecure` injects nothing",
            "delay: { duration: 2s, percent: 20 }",
        ),
        (
            "      fault: { delay: { duration: 2s, percent: 100.5 } }\n",
            48,
            "`percent` in `delay` in the TLS fault of entrypoint `websecure` must be 0 to 100, \
             not 100.5",
            "",
        ),
        (
            "      fault: { delay: { duration: soon } }\n",
            35,
            "`soon` is not a duration",
            "250ms",
        ),
    ];
    for (lines, col, message, hint) in cases {
        let err = fx.one(&with_tls(lines));
        assert_at(&err, 7, *col, message);
        assert_hint(&err, hint);
    }
}

#[test]
fn tls_fault_on_a_service_without_https_servers() {
    let fx = Fixture::new();
    let err = fx.one(
        "services:\n  s:\n    servers: [h2c://a:1]\n    tls: { fault: { abort: { percent: 10 } } }\n",
    );
    assert_at(
        &err,
        4,
        5,
        "`tls` in service `s` has no effect: none of its servers is https://",
    );
    assert_hint(&err, "https://host:port");
}

#[test]
fn relative_paths_start_at_the_config_files_directory() {
    let fx = Fixture::new();
    let conf_dir = fx.path("conf");
    fs::create_dir_all(conf_dir.join("tls")).unwrap();
    fs::write(conf_dir.join("tls/api.pem"), "x").unwrap();
    fs::write(conf_dir.join("tls/api.key"), "x").unwrap();
    let absolute_ca = fx.path("certs/clients-ca.pem");
    let text = format!(
        "\
entrypoints:
  websecure:
    address: 127.0.0.1:0
    tls:
      certificates: [{{ cert_file: tls/api.pem, key_file: ./tls/api.key }}]
      client_auth: {{ mode: require, ca_file: '../certs/clients-ca.pem' }}
services:
  s:
    servers: [https://a]
    tls: {{ ca_file: '{}' }}
",
        absolute_ca.display()
    );
    let path = conf_dir.join("strait.yaml");
    fs::write(&path, text).unwrap();
    let config = load(&path).unwrap_or_else(|errors| panic!("{errors:#?}"));
    let tls = config.entrypoints["websecure"].tls.as_ref().unwrap();
    assert_eq!(tls.certificates[0].cert_file, conf_dir.join("tls/api.pem"));
    assert_eq!(tls.certificates[0].key_file, conf_dir.join("tls/api.key"));
    let ca = tls.client_auth.as_ref().unwrap().ca_file.as_ref().unwrap();
    assert!(ca.is_absolute());
    assert_eq!(
        fs::canonicalize(ca).unwrap(),
        fs::canonicalize(&absolute_ca).unwrap()
    );
    let service_ca = config.services["s"].tls.as_ref().unwrap().ca_file.as_ref();
    assert_eq!(service_ca, Some(&absolute_ca));

    // The same text in another directory looks for its files there.
    let elsewhere = fx.path("strait.yaml");
    fs::copy(&path, &elsewhere).unwrap();
    let errors = load(&elsewhere).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].message.starts_with(&format!(
            "cannot read cert_file `tls/api.pem` (resolved to {}):",
            fx.path("tls/api.pem").display()
        )),
        "{}",
        errors[0]
    );
}

#[test]
fn paths_of_a_relative_config_file_become_absolute() {
    // `parse_str` with a bare file name resolves against the working directory.
    let cwd = std::env::current_dir().unwrap();
    let text = "services:\n  s:\n    servers: [https://a]\n    tls: { ca_file: Cargo.toml }\n";
    let config = parse_str(text, Format::Yaml, "strait.yaml").unwrap();
    let ca = config.services["s"].tls.as_ref().unwrap().ca_file.clone();
    assert_eq!(ca, Some(cwd.join("Cargo.toml")));
}

// === One test per kind of TLS error ===

#[test]
fn unreadable_cert_file() {
    let fx = Fixture::new();
    let text = "\
entrypoints:
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates:
        - { cert_file: certs/missing.pem, key_file: certs/api.key }
        - { cert_file: certs/api.pem, key_file: certs }
";
    let errors = fx.errors(text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    let resolved = fx.path("certs/missing.pem");
    assert_at(
        &errors[0],
        6,
        24,
        &format!(
            "cannot read cert_file `certs/missing.pem` (resolved to {}): No such file or directory",
            resolved.display()
        ),
    );
    assert_hint(
        &errors[0],
        "relative paths start at the directory of the config file",
    );
    assert_at(
        &errors[1],
        7,
        49,
        "cannot read key_file `certs` (resolved to",
    );
    assert!(
        errors[1].message.ends_with("): it is a directory"),
        "{}",
        errors[1]
    );
    assert_hint(&errors[1], "name the PEM file itself");

    // Written absolute, the path is shown once.
    let missing = fx.path("nope.pem").display().to_string();
    let err = fx.one(&with_service_tls(&format!("      ca_file: '{missing}'\n")));
    assert_eq!(
        err.message,
        format!("cannot read ca_file `{missing}`: No such file or directory")
    );
    assert_at(&err, 5, 16, "cannot read ca_file");
}

#[test]
fn empty_file_path() {
    let fx = Fixture::new();
    let err = fx.one(&with_service_tls("      ca_file: ''\n"));
    assert_at(
        &err,
        5,
        16,
        "empty `ca_file` in the TLS settings of service `s`",
    );
}

#[test]
fn missing_certificates_and_keys() {
    let fx = Fixture::new();
    let err = fx.one(
        "entrypoints:\n  websecure:\n    address: 0.0.0.0:8443\n    tls:\n      certificates: []\n",
    );
    assert_at(&err, 5, 21, "entrypoint `websecure` has no certificates");
    assert_hint(&err, "cert_file: certs/api.pem");

    let err = fx.one(
        "entrypoints:\n  websecure:\n    address: 0.0.0.0:8443\n    tls:\n      certificates:\n        - { cert_file: certs/api.pem }\n",
    );
    assert_at(
        &err,
        6,
        11,
        "missing `key_file` in certificate 1 of entrypoint `websecure`",
    );
}

#[test]
fn two_default_certificates() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "        - { cert_file: certs/other.pem, key_file: certs/other.key, default: true }\n        - { cert_file: certs/api.pem, key_file: certs/api.key, default: true }\n      sni_strict: false\n",
    ));
    assert_at(
        &err,
        8,
        73,
        "certificates 2 and 3 of entrypoint `websecure` both say `default: true`",
    );
    assert_hint(&err, "only one certificate can be the default");
}

#[test]
fn bad_alpn_value() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      alpn: [h2, http/2]\n"));
    assert_at(
        &err,
        7,
        18,
        "unknown ALPN protocol `http/2` in the TLS settings of entrypoint `websecure`",
    );
    assert_hint(&err, "the protocols are `h2` and `http/1.1`");

    let err = fx.one(&with_service_tls("      alpn: [http/1]\n"));
    assert_at(
        &err,
        5,
        14,
        "unknown ALPN protocol `http/1` in the TLS settings of service `s`",
    );
    assert_hint(
        &err,
        "did you mean `http/1.1`? the protocols are `h2` and `http/1.1`",
    );

    let err = fx.one(&with_tls("      alpn: [h2c]\n"));
    assert_hint(&err, "with TLS it is `h2`");
}

#[test]
fn duplicate_alpn() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      alpn: [h2, http/1.1, h2]\n"));
    assert_at(
        &err,
        7,
        28,
        "`h2` is listed twice in `alpn` in the TLS settings of entrypoint `websecure`",
    );
}

#[test]
fn empty_alpn() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      alpn: []\n"));
    assert_at(
        &err,
        7,
        13,
        "`alpn` in the TLS settings of entrypoint `websecure` is empty",
    );
    assert_hint(&err, "leave `alpn` out for [h2, http/1.1]");
}

#[test]
fn unknown_cipher_suite() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      cipher_suites: [TLS13_AES_128_GCM_SHA256, tls13_aes_128_gcm_sha265]\n",
    ));
    assert_at(
        &err,
        7,
        49,
        "unknown cipher suite `tls13_aes_128_gcm_sha265` in the TLS settings of entrypoint `websecure`",
    );
    assert_hint(&err, "did you mean `TLS13_AES_128_GCM_SHA256`?");
    assert_hint(
        &err,
        "cipher suites are `TLS13_AES_256_GCM_SHA384`, `TLS13_AES_128_GCM_SHA256`",
    );
    assert_hint(&err, "`TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256`");

    let err = fx.one(&with_tls("      cipher_suites: [RC4]\n"));
    let hint = err.hint.as_deref().unwrap();
    assert!(hint.starts_with("cipher suites are `TLS13_"), "{hint}");
}

#[test]
fn duplicate_and_empty_cipher_suites() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      cipher_suites: [TLS13_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256]\n",
    ));
    assert_at(
        &err,
        7,
        49,
        "cipher suite `TLS13_AES_128_GCM_SHA256` is listed twice",
    );

    let err = fx.one(&with_tls("      cipher_suites: []\n"));
    assert_at(
        &err,
        7,
        22,
        "`cipher_suites` in the TLS settings of entrypoint `websecure` is empty",
    );
    assert_hint(
        &err,
        "leave `cipher_suites` out for the provider's defaults",
    );
}

#[test]
fn min_version_1_3_with_only_tls12_suites() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      min_version: \"1.3\"\n      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
    ));
    assert_at(
        &err,
        8,
        22,
        "`cipher_suites` in the TLS settings of entrypoint `websecure` has no TLS 1.3 suite, \
         but `min_version` is 1.3",
    );
    assert_hint(&err, "TLS13_AES_128_GCM_SHA256");
}

#[test]
fn bad_min_version() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      min_version: 1.1\n"));
    assert_at(
        &err,
        7,
        20,
        "TLS 1.1 for `min_version` in the TLS settings of entrypoint `websecure` is not supported",
    );
    let err = fx.one(&with_tls("      min_version: TLSv1.3\n"));
    assert_at(&err, 7, 20, "unknown TLS version `TLSv1.3`");
    assert_hint(&err, "write \"1.2\" or \"1.3\"");
    let err = fx.one(&with_tls("      min_version: [1.3]\n"));
    assert_at(&err, 7, 20, "expected a TLS version for `min_version`");
}

#[test]
fn handshake_timeout_zero() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      handshake_timeout: 0s\n"));
    assert_at(
        &err,
        7,
        26,
        "`handshake_timeout` in the TLS settings of entrypoint `websecure` is zero",
    );
    assert_hint(&err, "the default, 10s");

    let err = fx.one(&with_tls("      handshake_timeout: 10\n"));
    assert_at(
        &err,
        7,
        26,
        "expected a duration string for `handshake_timeout`",
    );
}

#[test]
fn sni_strict_must_be_a_boolean() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      sni_strict: 'yes'\n"));
    assert_at(
        &err,
        7,
        19,
        "expected a boolean for `sni_strict` in the TLS settings of entrypoint `websecure`, \
         found a string",
    );
}

#[test]
fn unknown_tls_keys_suggest_the_closest_key() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      min_verison: \"1.3\"\n"));
    assert_at(
        &err,
        7,
        7,
        "unknown key `min_verison` in the TLS settings of entrypoint `websecure`",
    );
    assert_hint(&err, "did you mean `min_version`?");

    let err = fx.one(&with_service_tls("      servername: a\n"));
    assert_at(
        &err,
        5,
        7,
        "unknown key `servername` in the TLS settings of service `s`",
    );
    assert_hint(&err, "did you mean `server_name`?");
}

#[test]
fn client_auth_without_mode() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      client_auth:\n        ca_file: certs/clients-ca.pem\n",
    ));
    assert_at(
        &err,
        7,
        7,
        "missing `mode` in `client_auth` of entrypoint `websecure`",
    );
}

#[test]
fn client_auth_missing_ca_file() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls("      client_auth:\n        mode: require\n"));
    assert_at(
        &err,
        7,
        7,
        "missing `ca_file` in `client_auth` of entrypoint `websecure`: `mode: require` checks \
         client certificates against it",
    );
    assert_hint(&err, "set `ca_file` to the PEM bundle");
}

#[test]
fn client_auth_ca_file_with_mode_none() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      client_auth:\n        mode: none\n        ca_file: certs/clients-ca.pem\n",
    ));
    assert_at(
        &err,
        9,
        9,
        "`ca_file` has no effect with `mode: none` in `client_auth` of entrypoint `websecure`",
    );
    assert_hint(
        &err,
        "remove `ca_file`, or set `mode: request` or `mode: require`",
    );
}

#[test]
fn client_auth_forward_header_with_mode_none() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      client_auth:\n        mode: none\n        forward_header: x-client\n",
    ));
    assert_at(
        &err,
        9,
        9,
        "`forward_header` has no effect with `mode: none` in `client_auth` of entrypoint \
         `websecure`",
    );
}

#[test]
fn bad_client_auth_mode() {
    let fx = Fixture::new();
    let err = fx.one(&with_tls(
        "      client_auth: { mode: requre, ca_file: certs/clients-ca.pem }\n",
    ));
    assert_at(
        &err,
        7,
        28,
        "unknown client_auth mode `requre` in `client_auth` of entrypoint `websecure`",
    );
    assert_hint(
        &err,
        "did you mean `require`? modes are `none`, `request`, `require`",
    );
    let err = fx.one(&with_tls("      client_auth: { mode: true }\n"));
    assert_at(&err, 7, 28, "expected a string for `mode`");
}

#[test]
fn bad_forward_header() {
    let fx = Fixture::new();
    let cases = [
        (
            "'x client'",
            "`x client` for `forward_header` in `client_auth` of entrypoint `websecure` is not \
             a valid header name",
        ),
        ("':authority'", "`:authority` for `forward_header`"),
        ("''", "empty `forward_header`"),
        ("Host", "`host` for `forward_header`"),
    ];
    for (value, message) in cases {
        let err = fx.one(&with_tls(&format!(
            "      client_auth:\n        mode: require\n        ca_file: certs/clients-ca.pem\n        forward_header: {value}\n"
        )));
        assert_at(&err, 10, 25, message);
    }
    let err = fx.one(&with_tls(
        "      client_auth:\n        mode: require\n        ca_file: certs/clients-ca.pem\n        forward_header: ':path'\n",
    ));
    assert!(err.message.ends_with("is a pseudo-header"), "{err}");
}

#[test]
fn client_cert_san_unreachable() {
    let fx = Fixture::new();
    let text = "\
entrypoints:
  web: { address: 0.0.0.0:8080 }
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates: [{ cert_file: certs/api.pem, key_file: certs/api.key }]
routers:
  r:
    match: { client_cert_san: spiffe://example.org/orders }
    service: s
  only-web:
    entrypoints: [web]
    match: { client_cert_san: spiffe://example.org/orders }
    service: s
services:
  s: { servers: [h2c://127.0.0.1:1] }
";
    let errors = fx.errors(text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(
        &errors[0],
        9,
        31,
        "client_cert_san in router `r` can never match: none of the router's entrypoints asks \
         for client certificates",
    );
    assert_hint(
        &errors[0],
        "add `client_auth` with `mode: request` or `mode: require` to the TLS settings of \
         entrypoint `websecure`",
    );
    assert_at(
        &errors[1],
        13,
        31,
        "client_cert_san in router `only-web` can never match",
    );
    assert_hint(&errors[1], "serve the router on a TLS entrypoint");

    // `mode: none` asks for nothing either.
    let text = text.replace(
        "api.key }]\n",
        "api.key }]\n      client_auth: { mode: none }\n",
    );
    let errors = fx.errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_at(&errors[0], 10, 31, "can never match");
}

#[test]
fn client_cert_san_of_a_broken_entrypoint_is_not_judged() {
    // The entrypoint's own error is enough; whether it would ask is unknown.
    let fx = Fixture::new();
    let text = "\
entrypoints:
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates: [{ cert_file: certs/api.pem, key_file: certs/api.key }]
      client_auth: { mode: require }
routers:
  r: { match: { client_cert_san: a.example.org }, service: s }
services:
  s: { servers: [h2c://127.0.0.1:1] }
";
    let err = fx.one(text);
    assert_at(&err, 6, 7, "missing `ca_file`");
}

#[test]
fn bad_client_cert_san() {
    let fx = Fixture::new();
    let base = "\
entrypoints:
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates: [{ cert_file: certs/api.pem, key_file: certs/api.key }]
      client_auth: { mode: require, ca_file: certs/clients-ca.pem }
services:
  s: { servers: [h2c://127.0.0.1:1] }
routers:
  r:
    service: s
";
    let err = fx.one(&format!("{base}    match: {{ client_cert_san: '' }}\n"));
    assert_at(&err, 12, 31, "empty `client_cert_san`");
    let err = fx.one(&format!("{base}    match: {{ client_cert_san: 'a b' }}\n"));
    assert_at(&err, 12, 31, "`client_cert_san` `a b` has spaces");
    let err = fx.one(&format!("{base}    match: {{ client_cert_san: 7 }}\n"));
    assert_at(&err, 12, 31, "expected a string for `client_cert_san`");
}

#[test]
fn service_tls_without_https_server() {
    let fx = Fixture::new();
    let err =
        fx.one("services:\n  s:\n    servers: [h2c://a:1, http://b]\n    tls: { alpn: [h2] }\n");
    assert_at(
        &err,
        4,
        5,
        "`tls` in service `s` has no effect: none of its servers is https://",
    );
    assert_hint(&err, "https://host:port");

    // A server URL that is wrong is reported alone: it may have been meant as https://.
    let err = fx.one("services:\n  s:\n    servers: [htps://a]\n    tls: {}\n");
    assert_at(&err, 3, 15, "unsupported scheme `htps://`");
}

#[test]
fn client_cert_without_key() {
    let fx = Fixture::new();
    let err = fx.one(&with_service_tls("      cert_file: certs/client.pem\n"));
    assert_at(
        &err,
        5,
        7,
        "`cert_file` in the TLS settings of service `s` has no `key_file`",
    );
    assert_hint(&err, "give both or neither");

    let err = fx.one(&with_service_tls(
        "      ca_file: certs/internal-ca.pem\n      key_file: certs/client.key\n",
    ));
    assert_at(
        &err,
        6,
        7,
        "`key_file` in the TLS settings of service `s` has no `cert_file`",
    );
}

#[test]
fn bad_server_name() {
    let fx = Fixture::new();
    let cases = [
        ("'api.internal:8443'", "it has a port"),
        ("https://api.internal", "it is a URL"),
        ("'*.internal'", "wildcards"),
        ("'a_b c'", "labels of up to 63"),
        ("10.0.0.256", "looks like an IP address"),
    ];
    for (value, message) in cases {
        let err = fx.one(&with_service_tls(&format!("      server_name: {value}\n")));
        assert_at(&err, 5, 20, message);
        assert!(err.message.starts_with("`server_name` `"), "{err}");
        assert!(
            err.message.contains("is not a DNS name or IP address"),
            "{err}"
        );
    }
}

#[test]
fn insecure_skip_verify_must_be_a_boolean() {
    let fx = Fixture::new();
    let err = fx.one(&with_service_tls("      insecure_skip_verify: 'true'\n"));
    assert_at(
        &err,
        5,
        29,
        "expected a boolean for `insecure_skip_verify` in the TLS settings of service `s`",
    );
}

#[test]
fn tls_entrypoints_share_the_listener_address_rules() {
    let fx = Fixture::new();
    let text = with_tls("  web:\n    address: 0.0.0.0:8443\n");
    let err = fx.one(&text);
    assert_at(
        &err,
        8,
        14,
        "address 0.0.0.0:8443 is already used by entrypoint `websecure`",
    );
}

#[test]
fn every_tls_error_in_a_file_is_reported_in_order() {
    let fx = Fixture::new();
    let text = "\
entrypoints:
  websecure:
    address: 0.0.0.0:8443
    tls:
      certificates:
        - { cert_file: certs/nope.pem, key_file: certs/api.key }
      alpn: [h3]
      handshake_timeout: 0s
      client_auth: { mode: require }
routers:
  r: { match: { client_cert_san: a }, service: s }
services:
  s:
    servers: [https://a]
    tls: { server_name: 'a b', cert_file: certs/client.pem }
";
    let errors = fx.errors(text);
    let found: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(
        found,
        [(6, 24), (7, 14), (8, 26), (9, 7), (15, 25), (15, 32)],
        "{errors:#?}"
    );
}
