//! Postgres over TLS, against a Postgres of the test's own that refuses every TCP connection
//! without TLS, with a certificate for `localhost` (not for 127.0.0.1) signed by a CA made
//! here with openssl: libpq's `sslmode` values mean what they mean there, `sslrootcert` names
//! the CA, and the whole service (migrate, creates, redirects) runs over `verify-full`.

mod common;
#[path = "support/processes.rs"]
mod processes;

use std::path::Path;
use std::process::Command;

use processes::OwnPostgres;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (make services installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA named `name` in `dir`: `{name}.pem` and `{name}.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `server.pem` and `server.key` in `dir`: for DNS name `localhost` only, signed by `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// Connects with `url`, as `shortener migrate` does; answers the error's text, if any.
async fn migrate_with(url: &str) -> Result<(), String> {
    shortener::storage::migrate(&common::target(url))
        .await
        .map(drop)
        .map_err(|error| format!("{error:#}"))
}

#[tokio::test]
async fn postgres_tls_modes_mean_what_libpq_says_and_the_service_runs_over_verify_full() {
    let certs = std::env::temp_dir().join(format!("shortener-test-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    make_ca(&certs, "ca");
    make_ca(&certs, "other-ca");
    make_server_cert(&certs, "ca");

    let server = OwnPostgres::init();
    server.write_file(
        "server.pem",
        &std::fs::read(certs.join("server.pem")).unwrap(),
    );
    server.write_file(
        "server.key",
        &std::fs::read(certs.join("server.key")).unwrap(),
    );
    server.configure(&[
        ("ssl", "on"),
        ("ssl_cert_file", "'server.pem'"),
        ("ssl_key_file", "'server.key'"),
    ]);
    // TCP only with TLS; the Unix socket (for the test's own checks) without.
    server.write_file(
        "pg_hba.conf",
        b"local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    );
    server.start_again();
    let (socket, connection) =
        tokio_postgres::connect(&server.socket_params("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    socket
        .batch_execute("CREATE DATABASE shortener")
        .await
        .unwrap();

    let ca = certs.join("ca.pem");
    let other_ca = certs.join("other-ca.pem");
    let (ca, other_ca) = (ca.to_str().unwrap(), other_ca.to_str().unwrap());
    let url = |host: &str, params: &str| {
        format!(
            "postgres://postgres@{host}:{}/shortener?{params}",
            server.port
        )
    };

    // Without TLS the server says no; `prefer` (the default) and `require` encrypt without
    // checking the certificate.
    let refused = migrate_with(&url("127.0.0.1", "sslmode=disable")).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("no encryption")),
        "{refused:?}"
    );
    migrate_with(&url("127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    migrate_with(&format!(
        "postgres://postgres@127.0.0.1:{}/shortener",
        server.port
    ))
    .await
    .unwrap();
    // `verify-full` checks the chain and the name: right for localhost, wrong for 127.0.0.1.
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    migrate_with(&url("localhost", &full)).await.unwrap();
    let wrong_name = migrate_with(&url("127.0.0.1", &full)).await;
    assert!(
        wrong_name
            .as_ref()
            .is_err_and(|e| e.contains("not valid for name")),
        "{wrong_name:?}"
    );
    // Key-value form too.
    migrate_with(&format!(
        "host=localhost port={} user=postgres dbname=shortener sslmode=verify-full sslrootcert={ca}",
        server.port
    ))
    .await
    .unwrap();
    // `verify-ca` checks the chain only.
    migrate_with(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    // Another CA's certificate is refused, whatever the mode that checks.
    for params in [
        format!("sslmode=verify-full&sslrootcert={other_ca}"),
        format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        format!("sslmode=require&sslrootcert={other_ca}"),
    ] {
        let refused = migrate_with(&url("localhost", &params)).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer")),
            "{params}: {refused:?}"
        );
    }

    // The whole service over verify-full: every pool, the lease and readiness connect.
    let db_url = url("localhost", &full);
    let app = common::spawn_app_on(&db_url, &[]).await;
    let code = app.create("https://example.com/over-tls").await;
    let redirect = app.get(&format!("/{code}")).await;
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some("https://example.com/over-tls")
    );
    let ready = common::send(app.admin, "GET", "/readyz", &[], b"").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let row = socket
        .query_one(
            "SELECT count(*) FILTER (WHERE ssl), count(*) FILTER (WHERE NOT ssl) \
             FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'shortener'",
            &[],
        )
        .await
        .unwrap();
    let (encrypted, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(encrypted >= 2, "{encrypted} encrypted connections");
    assert_eq!(plain, 0);
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&certs);
}
