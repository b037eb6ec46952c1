//! What the parsing settings change in a WSGI environ: the fields the
//! parser keeps are the ones the app sees, mapped by gunicorn's rules
//! (`--header-map`, a kept `SCRIPT_NAME` field, an absolute-form target's
//! host).

#![cfg(feature = "python")]

use std::fs;

use gunicornd_test_support::*;
use serde_json::Value;

const APPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsgi/apps.py");

/// `apps:environ` (the environ as JSON) with `args` added.
fn environ_server(args: &[&str]) -> Server {
    let mut all = vec!["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket"];
    all.extend_from_slice(args);
    all.push("apps:environ");
    let launch = Launch::new(&all);
    fs::copy(APPS, launch.path("apps.py")).unwrap();
    launch.booted(1).start()
}

fn environ_of(srv: &Server, raw: &str) -> Value {
    let r = try_http_request(srv.addr(), raw.as_bytes())
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", srv.log()));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), srv.log());
    r.json()
}

#[test]
fn dangerous_header_map_passes_underscore_fields_on() {
    let srv = environ_server(&["--header-map", "dangerous"]);
    let env = environ_of(
        &srv,
        "GET /app/page HTTP/1.1\r\nHost: h\r\nX_Foo: under\r\nX-Foo: dash\r\n\
         SCRIPT_NAME: /app\r\n\r\n",
    );
    // The ambiguity `drop` exists to prevent: both names share one key.
    assert_eq!(env["HTTP_X_FOO"], "under,dash", "{env}");
    // A kept SCRIPT_NAME field sets SCRIPT_NAME, as in gunicorn.
    assert_eq!(env["SCRIPT_NAME"], "/app", "{env}");
    assert_eq!(env["PATH_INFO"], "/page", "{env}");
    assert_eq!(env["HTTP_SCRIPT_NAME"], "/app", "{env}");
}

#[test]
fn by_default_underscore_fields_never_reach_the_app() {
    let srv = environ_server(&[]);
    let env = environ_of(
        &srv,
        "GET /app/page HTTP/1.1\r\nHost: h\r\nX_Foo: under\r\nX-Foo: dash\r\n\r\n",
    );
    assert_eq!(env["HTTP_X_FOO"], "dash", "{env}");
    assert_eq!(env["SCRIPT_NAME"], "", "{env}");
    assert_eq!(env["PATH_INFO"], "/app/page", "{env}");
    let refuse = environ_server(&["--header-map", "refuse"]);
    let r = try_http_request(
        refuse.addr(),
        b"GET / HTTP/1.1\r\nHost: h\r\nX_Foo: under\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn an_absolute_form_target_names_the_host() {
    let srv = environ_server(&[]);
    let env = environ_of(
        &srv,
        "GET http://target.example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    );
    assert_eq!(env["HTTP_HOST"], "target.example:8080", "{env}");
    assert_eq!(env["SERVER_NAME"], "target.example", "{env}");
    assert_eq!(env["SERVER_PORT"], "8080", "{env}");
    assert_eq!(env["PATH_INFO"], "/p", "{env}");
    assert_eq!(env["QUERY_STRING"], "q=1", "{env}");
    assert_eq!(env["RAW_URI"], "http://target.example:8080/p?q=1", "{env}");
}
