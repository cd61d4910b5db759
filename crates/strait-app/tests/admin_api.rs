//! The admin API: health, readiness, metrics, config, routers, services, reload, token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use strait_grpc::echo::EchoRequest;
use strait_test::backend::TestBackend;
use strait_test::{echo_client, http1, start_strait};

fn with_admin(backend: &str, admin_extra: &str) -> String {
    format!(
        "admin:\n  address: 127.0.0.1:0\n{admin_extra}entrypoints:\n  web: {{ address: 127.0.0.1:0 }}\n\
         routers:\n  echo: {{ match: {{ grpc_service: strait.echo.v1.Echo }}, service: echo, timeout: 5s }}\n\
         services:\n  echo:\n    servers:\n      - {{ url: '{backend}', weight: 3 }}\n"
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn config_routers_services_and_metrics() {
    let backend = TestBackend::start().await;
    let strait = start_strait(&with_admin(&backend.url(), "")).await;
    let admin = strait.admin().unwrap();
    echo_client(strait.entrypoint("web").unwrap())
        .await
        .unary(EchoRequest::default())
        .await
        .unwrap();

    let (status, body) = http1(admin, "GET", "/healthz", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = http1(admin, "GET", "/readyz", &[]).await;
    assert_eq!(status, 200);

    let (status, body) = http1(admin, "GET", "/api/config", &[]).await;
    assert_eq!(status, 200);
    let config = json(&body);
    assert_eq!(config["generation"], 1);
    assert!(config["config"]
        .as_str()
        .unwrap()
        .contains("grpc_service: strait.echo.v1.Echo"));

    let (_, body) = http1(admin, "GET", "/api/routers", &[]).await;
    let routers = json(&body);
    let echo = &routers["routers"][0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["service"], "echo");
    assert_eq!(echo["match"]["grpc_service"], "strait.echo.v1.Echo");
    assert_eq!(echo["timeout"], "5000ms");
    assert_eq!(echo["entrypoints"][0], "web");

    let (_, body) = http1(admin, "GET", "/api/services", &[]).await;
    let services = json(&body);
    let endpoint = &services["services"][0]["endpoints"][0];
    assert_eq!(endpoint["endpoint"], backend.url());
    assert_eq!(endpoint["weight"], 3);
    assert_eq!(endpoint["open_connections"], 1);
    assert_eq!(endpoint["active_requests"], 0);
    assert_eq!(endpoint["healthy"], true);
    assert_eq!(endpoint["ejected"], false);

    let (status, body) = http1(admin, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("strait_config_generation 1"), "{body}");
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    let (status, _) = http1(admin, "GET", "/nope", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = http1(admin, "GET", "/api/reload", &[]).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn reload_over_the_api() {
    let a = TestBackend::start().await;
    let b = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strait.yaml");
    std::fs::write(&file, with_admin(&a.url(), "")).unwrap();
    let strait = strait_app::start(strait_config::load(&file).unwrap())
        .await
        .unwrap();
    let admin = strait.admin().unwrap();

    // Without a file there is nothing to reload.
    let (status, body) = http1(admin, "POST", "/api/reload", &[]).await;
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("no config file"),
        "{body}"
    );

    strait.watch_config_file(file.clone());
    // A broken file: refused with its location, counted, the old config stays.
    std::fs::write(&file, "entrypoints:\n  web: { address: nowhere }\n").unwrap();
    let (status, body) = http1(admin, "POST", "/api/reload", &[]).await;
    assert_eq!(status, 400);
    let error = json(&body)["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!("{}:2:19:", file.display())),
        "{error}"
    );
    let (_, metrics) = http1(admin, "GET", "/metrics", &[]).await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("strait_config_reloads_total{result=\"error\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    std::fs::write(&file, with_admin(&b.url(), "")).unwrap();
    let (status, body) = http1(admin, "POST", "/api/reload", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["generation"].as_u64().unwrap() >= 2);
    echo_client(strait.entrypoint("web").unwrap())
        .await
        .unary(EchoRequest::default())
        .await
        .unwrap();
    assert_eq!((a.calls(), b.calls()), (0, 1));
}

#[tokio::test]
async fn bearer_token_guards_everything_but_probes() {
    let backend = TestBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let yaml = with_admin(
        &backend.url(),
        &format!("  token_file: '{}'\n", token_file.display()),
    );
    let strait = start_strait(&yaml).await;
    let admin = strait.admin().unwrap();

    for path in ["/api/config", "/metrics", "/api/services"] {
        let (status, _) = http1(admin, "GET", path, &[]).await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = http1(admin, "GET", path, &[("authorization", "Bearer wrong")]).await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = http1(
            admin,
            "GET",
            path,
            &[("authorization", "Bearer s3cret-token")],
        )
        .await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, _) = http1(admin, "POST", "/api/reload", &[]).await;
    assert_eq!(status, 401);
    let (status, _) = http1(admin, "GET", "/healthz", &[]).await;
    assert_eq!(status, 200);
    let (status, _) = http1(admin, "GET", "/readyz", &[]).await;
    assert_eq!(status, 200);
    // The token itself never shows in the config.
    let (_, body) = http1(
        admin,
        "GET",
        "/api/config",
        &[("authorization", "Bearer s3cret-token")],
    )
    .await;
    assert!(!body.contains("s3cret"));
}
