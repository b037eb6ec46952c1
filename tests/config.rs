//! Configuration as seen from outside: run the real `gunicornd` binary with
//! `--print-config`/`--check-config` in a scratch directory and read what it
//! prints and how it exits.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// A scratch working directory for one test.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.path().join(name), text).expect("write file");
        self
    }

    /// Run gunicornd here with only the given environment variables.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gunicornd"))
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .expect("run gunicornd")
    }

    /// Run with `--print-config` and parse the printed settings.
    fn settings(&self, args: &[&str], env: &[(&str, &str)]) -> toml::Table {
        let mut all = vec!["--print-config"];
        all.extend_from_slice(args);
        let out = self.run(&all, env);
        assert_eq!(
            out.status.code(),
            Some(0),
            "gunicornd {all:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 output");
        toml::from_str(&text).unwrap_or_else(|e| panic!("output is not TOML ({e}):\n{text}"))
    }

    /// Run expecting failure; returns stderr.
    fn fails(&self, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
        let out = self.run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "gunicornd {args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout on error");
        stderr
    }
}

fn int(t: &toml::Table, key: &str) -> i64 {
    t[key]
        .as_integer()
        .unwrap_or_else(|| panic!("{key} is not an integer: {:?}", t[key]))
}

fn strs(t: &toml::Table, key: &str) -> Vec<String> {
    t[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
        .iter()
        .map(|v| v.as_str().expect("string item").to_owned())
        .collect()
}

/// An error is exactly one `Error: ` line.
fn assert_error_line(stderr: &str, expected: &str) {
    assert_eq!(stderr, format!("Error: {expected}\n"));
}

const APP: &str = "builtin:hello";

#[test]
fn file_then_cmd_args_then_command_line() {
    let s = Scratch::new();
    s.write("gunicornd.toml", "workers = 2\nbind = \"127.0.0.1:1\"\n");
    let t = s.settings(&[APP], &[]);
    assert_eq!(
        (int(&t, "workers"), strs(&t, "bind")),
        (2, vec!["127.0.0.1:1".into()])
    );

    let env = [("GUNICORN_CMD_ARGS", "-w 3 --bind 127.0.0.1:2 -b '[::1]:2'")];
    let t = s.settings(&[APP], &env);
    assert_eq!(int(&t, "workers"), 3);
    assert_eq!(strs(&t, "bind"), ["127.0.0.1:2", "[::1]:2"]);

    let t = s.settings(&["-w", "4", "-b", "127.0.0.1:3", APP], &env);
    assert_eq!(
        (int(&t, "workers"), strs(&t, "bind")),
        (4, vec!["127.0.0.1:3".into()])
    );

    // Settings not given higher up keep the lower layer's value.
    let t = s.settings(&["-b", "127.0.0.1:3", APP], &env);
    assert_eq!(int(&t, "workers"), 3);
}

#[test]
fn builtin_defaults_and_environment_defaults() {
    let s = Scratch::new();
    let t = s.settings(&[APP], &[]);
    assert_eq!(strs(&t, "bind"), ["127.0.0.1:8000"]);
    assert_eq!(int(&t, "workers"), 1);
    assert_eq!(int(&t, "backlog"), 2048);
    assert_eq!(int(&t, "timeout"), 30);
    assert_eq!(int(&t, "upgrade_timeout"), 60);
    assert_eq!(int(&t, "limit_request_line"), 4094);
    assert_eq!(t["errorlog"].as_str(), Some("-"));
    assert_eq!(t["control_socket_mode"].as_str(), Some("0600"));

    let env = [("PORT", "5000"), ("WEB_CONCURRENCY", "6")];
    let t = s.settings(&[APP], &env);
    assert_eq!(strs(&t, "bind"), ["0.0.0.0:5000"]);
    assert_eq!(int(&t, "workers"), 6);

    // The config file beats the environment's defaults.
    s.write("gunicornd.toml", "workers = 2\n");
    assert_eq!(int(&s.settings(&[APP], &env), "workers"), 2);

    let err = s.fails(&[APP], &[("PORT", "http")], 1);
    assert!(
        err.starts_with("Error: invalid value 'http' for PORT"),
        "{err}"
    );
    std::fs::remove_file(s.path().join("gunicornd.toml")).unwrap();
    let err = s.fails(&[APP], &[("WEB_CONCURRENCY", "lots")], 1);
    assert!(
        err.starts_with("Error: invalid value 'lots' for WEB_CONCURRENCY"),
        "{err}"
    );
}

#[test]
fn upgrade_timeout_from_every_source_and_its_limits() {
    let s = Scratch::new();
    assert_eq!(int(&s.settings(&[APP], &[]), "upgrade_timeout"), 60);
    s.write("gunicornd.toml", "upgrade_timeout = 10\n");
    assert_eq!(int(&s.settings(&[APP], &[]), "upgrade_timeout"), 10);
    let env = [("GUNICORN_CMD_ARGS", "--upgrade-timeout 20")];
    assert_eq!(int(&s.settings(&[APP], &env), "upgrade_timeout"), 20);
    let t = s.settings(&["--upgrade-timeout", "30", APP], &env);
    assert_eq!(int(&t, "upgrade_timeout"), 30);
    assert_eq!(int(&t, "graceful_timeout"), 30);

    let err = s.fails(&["--upgrade-timeout", "soon", APP], &[], 1);
    assert_error_line(
        &err,
        "invalid value 'soon' for --upgrade-timeout: expected a non-negative integer",
    );
    let err = s.fails(
        &[APP],
        &[("GUNICORN_CMD_ARGS", "--upgrade-timeout 31536001")],
        1,
    );
    assert_error_line(
        &err,
        "invalid value '31536001' for --upgrade-timeout (from GUNICORN_CMD_ARGS): \
         expected at most 31536000 seconds (a year)",
    );
    s.write("gunicornd.toml", "upgrade_timeout = 1.5\n");
    let err = s.fails(&[APP], &[], 1);
    assert_error_line(
        &err,
        &format!(
            "wrong type for upgrade_timeout (in {}, line 1): expected an integer, \
             found the float 1.5",
            s.path().join("gunicornd.toml").display()
        ),
    );
}

#[test]
fn pythonpath_from_every_source_and_its_forms() {
    let s = Scratch::new();
    std::fs::create_dir(s.path().join("app")).unwrap();
    assert!(strs(&s.settings(&[APP], &[]), "pythonpath").is_empty());
    s.write("gunicornd.toml", "pythonpath = \"/srv/app, lib,\"\n");
    assert_eq!(
        strs(&s.settings(&[APP], &[]), "pythonpath"),
        ["/srv/app", "lib"]
    );
    s.write(
        "gunicornd.toml",
        "pythonpath = [\"/srv/app,lib\", \"more\"]\n",
    );
    assert_eq!(
        strs(&s.settings(&[APP], &[]), "pythonpath"),
        ["/srv/app", "lib", "more"]
    );
    let env = [("GUNICORN_CMD_ARGS", "--pythonpath 'env,/opt/py lib'")];
    assert_eq!(
        strs(&s.settings(&[APP], &env), "pythonpath"),
        ["env", "/opt/py lib"]
    );
    // Relative directories are printed as given, --chdir or not.
    let t = s.settings(
        &[
            "--chdir",
            "app",
            "--pythonpath",
            "/home/djangoprojects/myproject,/home/python/mylibrary,src",
            APP,
        ],
        &env,
    );
    assert_eq!(
        strs(&t, "pythonpath"),
        [
            "/home/djangoprojects/myproject",
            "/home/python/mylibrary",
            "src"
        ]
    );
    assert!(strs(&s.settings(&["--pythonpath", "", APP], &env), "pythonpath").is_empty());

    let err = s.fails(&[APP, "--pythonpath"], &[], 1);
    assert_error_line(
        &err,
        "a value is required for '--pythonpath <DIRS>' but none was supplied",
    );
    s.write("gunicornd.toml", "workers = 2\npythonpath = [\"a\", 1]\n");
    let err = s.fails(&[APP], &[], 1);
    assert_error_line(
        &err,
        &format!(
            "wrong type for pythonpath (in {}, line 2): expected a string or an array of \
             strings, found an array",
            s.path().join("gunicornd.toml").display()
        ),
    );
}

#[test]
fn preload_app_from_every_source() {
    let s = Scratch::new();
    let preload = |t: &toml::Table| t["preload_app"].as_bool().expect("a boolean");
    assert!(!preload(&s.settings(&[APP], &[])));
    assert!(preload(&s.settings(&["--preload", APP], &[])));
    let env = [("GUNICORN_CMD_ARGS", "--preload")];
    assert!(preload(&s.settings(&[APP], &env)));
    s.write("gunicornd.toml", "preload_app = true\n");
    assert!(preload(&s.settings(&[APP], &[])));
    s.write("gunicornd.toml", "preload = \"true\"\n");
    assert!(preload(&s.settings(&[APP], &[])));
    s.write("gunicornd.toml", "preload_app = false\n");
    assert!(!preload(&s.settings(&[APP], &[])));
    assert!(preload(&s.settings(&[APP], &env)));

    let file = s.path().join("gunicornd.toml");
    s.write("gunicornd.toml", "preload_app = \"maybe\"\n");
    let err = s.fails(&[APP], &[], 1);
    assert_error_line(
        &err,
        &format!(
            "invalid value 'maybe' for preload_app (in {}, line 1): expected true or false",
            file.display()
        ),
    );
    s.write("gunicornd.toml", "preload = true\npreload_app = true\n");
    let err = s.fails(&[APP], &[], 1);
    assert_error_line(
        &err,
        &format!(
            "'preload_app' and 'preload' are the same setting; give only one (in {}, line 2)",
            file.display()
        ),
    );
}

#[test]
fn default_config_file_is_read_from_the_working_directory() {
    let s = Scratch::new();
    s.write("gunicornd.toml", "workers = 7\napp = \"builtin:echo\"\n");
    let t = s.settings(&[], &[]);
    assert_eq!(int(&t, "workers"), 7);
    assert_eq!(t["app"].as_str(), Some("builtin:echo"));
    // The printed header names the file that was read.
    let out = s.run(&["--print-config"], &[]);
    let file = s.path().join("gunicornd.toml");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&file.display().to_string()));

    // -c (here from GUNICORN_CMD_ARGS) replaces the default file.
    s.write("other.toml", "timeout = 9\n");
    let t = s.settings(&[APP], &[("GUNICORN_CMD_ARGS", "-c other.toml")]);
    assert_eq!((int(&t, "workers"), int(&t, "timeout")), (1, 9));
}

#[test]
fn printed_config_is_a_valid_config_file() {
    let s = Scratch::new();
    let out = s.run(
        &[
            "--print-config",
            "-w",
            "3",
            "-e",
            "A=1",
            "--hook",
            "on_exit=echo bye",
            "--pythonpath",
            "lib, /srv/app",
            "--preload",
            APP,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    let other = Scratch::new();
    other.write("gunicornd.toml", &String::from_utf8(out.stdout).unwrap());
    let t = other.settings(&[], &[]);
    assert_eq!(int(&t, "workers"), 3);
    assert_eq!(strs(&t, "raw_env"), ["A=1"]);
    assert_eq!(strs(&t, "pythonpath"), ["lib", "/srv/app"]);
    assert_eq!(t["preload_app"].as_bool(), Some(true));
    assert_eq!(t["hooks"]["on_exit"].as_str(), Some("echo bye"));
    assert_eq!(t["app"].as_str(), Some(APP));
}

#[test]
fn bad_value_on_the_command_line() {
    let s = Scratch::new();
    let err = s.fails(&["--workers", "abc", APP], &[], 1);
    assert_error_line(
        &err,
        "invalid value 'abc' for --workers: expected a positive integer",
    );
    let err = s.fails(&["-b", "localhost:http", APP], &[], 1);
    assert_error_line(
        &err,
        "invalid value 'localhost:http' for --bind: 'http' is not a valid port number",
    );
    let err = s.fails(&["-u", "no-such-user-gunicornd", APP], &[], 1);
    assert!(
        err.contains("no such user 'no-such-user-gunicornd'"),
        "{err}"
    );
}

#[test]
fn bad_value_in_cmd_args() {
    let s = Scratch::new();
    let err = s.fails(&[APP], &[("GUNICORN_CMD_ARGS", "--workers abc")], 1);
    assert_error_line(
        &err,
        "invalid value 'abc' for --workers (from GUNICORN_CMD_ARGS): expected a positive integer",
    );
    let err = s.fails(&[APP], &[("GUNICORN_CMD_ARGS", "--bogus")], 1);
    assert!(err.starts_with("Error: unexpected argument '--bogus' found (from GUNICORN_CMD_ARGS)"));
}

#[test]
fn bad_value_in_the_file_names_key_file_and_line() {
    let s = Scratch::new();
    let file = s.path().join("gunicornd.toml");
    s.write("gunicornd.toml", "timeout = 5\nworkers = 0\n");
    let err = s.fails(&[APP], &[], 1);
    assert_error_line(
        &err,
        &format!(
            "invalid value '0' for workers (in {}, line 2): expected a positive integer",
            file.display()
        ),
    );
    s.write("gunicornd.toml", "bind = 8000\n");
    let err = s.fails(&[APP], &[], 1);
    assert_error_line(
        &err,
        &format!(
            "wrong type for bind (in {}, line 1): expected a string or an array of strings, \
             found the integer 8000",
            file.display()
        ),
    );
}

#[test]
fn unknown_key_in_the_file() {
    let s = Scratch::new();
    s.write(
        "conf.toml",
        "workers = 2\n\nstatsd_host = \"localhost:8125\"\n",
    );
    let err = s.fails(&["-c", "conf.toml", APP], &[], 1);
    let file = s.path().join("conf.toml");
    assert_error_line(
        &err,
        &format!(
            "unknown setting 'statsd_host' (in {}, line 3)",
            file.display()
        ),
    );
}

#[test]
fn unknown_flag() {
    let s = Scratch::new();
    let err = s.fails(&["--wrokers", "2", APP], &[], 1);
    assert_error_line(
        &err,
        "unexpected argument '--wrokers' found (did you mean '--workers'?)",
    );
}

#[test]
fn missing_app_is_a_usage_error() {
    let s = Scratch::new();
    let err = s.fails(&["-w", "2"], &[], 2);
    let lines: Vec<_> = err.lines().collect();
    assert!(lines[0].starts_with("Usage: gunicornd"), "{err}");
    assert_eq!(lines.last(), Some(&"Error: No application specified."));
}

#[test]
fn limit_flags_aliases_and_normalisation() {
    let s = Scratch::new();
    let t = s.settings(&["--limit-request-field-size", "0", APP], &[]);
    assert_eq!(int(&t, "limit_request_field_size"), 8190);
    let t = s.settings(&["--limit-request-field_size", "100", APP], &[]);
    assert_eq!(int(&t, "limit_request_field_size"), 100);
    let t = s.settings(
        &[
            "--limit-request-line",
            "9000",
            "--limit-request-fields",
            "0",
            APP,
        ],
        &[],
    );
    assert_eq!(int(&t, "limit_request_line"), 8190);
    assert_eq!(int(&t, "limit_request_fields"), 32768);
    let t = s.settings(&["--log-file", "err.log", APP], &[]);
    let errorlog = s.path().join("err.log");
    assert_eq!(t["errorlog"].as_str(), errorlog.to_str());
}

#[test]
fn hooks_from_the_file_and_the_command_line() {
    let s = Scratch::new();
    s.write(
        "gunicornd.toml",
        "[hooks]\non_starting = \"echo starting\"\nworker_exit = \"echo gone\"\n",
    );
    let t = s.settings(&["--hook", "worker_exit=logger exit", APP], &[]);
    let hooks = t["hooks"].as_table().expect("hooks table");
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks["on_starting"].as_str(), Some("echo starting"));
    assert_eq!(hooks["worker_exit"].as_str(), Some("logger exit"));

    let err = s.fails(&["--hook", "on_boot=x", APP], &[], 1);
    assert!(
        err.starts_with("Error: invalid value 'on_boot=x' for --hook: unknown hook"),
        "{err}"
    );
}

#[test]
fn check_config() {
    let s = Scratch::new();
    let out = s.run(&["--check-config", "builtin:debug?boot_sleep=1"], &[]);
    assert_eq!(out.status.code(), Some(0));
    // A Python app's import is the worker's business; its name is checked.
    let out = s.run(&["--check-config", "myapp:application"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let err = s.fails(&["--check-config", "my app:application"], &[], 1);
    assert_error_line(
        &err,
        "invalid value 'my app:application' for APP: 'my app:application' is not an app: \
         expected builtin:hello, builtin:echo, builtin:debug[?OPTIONS], static:DIR or a Python \
         WSGI app as MODULE[:NAME] or MODULE:FACTORY(ARGS) (a Python module is a dotted name such \
         as myproject.wsgi)",
    );
    s.write("gunicornd.toml", "app = \"builtin:nope\"\n");
    let err = s.fails(&["--check-config"], &[], 1);
    assert!(err.contains("for app (in "), "{err}");
    let err = s.fails(
        &["--check-config", "--worker-tmp-dir", "missing", APP],
        &[],
        1,
    );
    assert_error_line(
        &err,
        "invalid value 'missing' for --worker-tmp-dir: not an existing directory",
    );
}

#[test]
fn check_config_and_startup_reject_a_spec_the_workers_cannot_load() {
    // The workers parse the spec with the same grammar: what passes
    // `--check-config` loads, and what would make every worker exit 4 is
    // refused before any worker is forked.
    let s = Scratch::new();
    let expected = "invalid value 'builtin:hello?x=1' for APP: builtin:hello takes no options \
                    (only builtin:debug does): expected builtin:hello, builtin:echo, \
                    builtin:debug[?OPTIONS], static:DIR or a Python WSGI app as MODULE[:NAME] or MODULE:FACTORY(ARGS)";
    let err = s.fails(&["--check-config", "builtin:hello?x=1"], &[], 1);
    assert_error_line(&err, expected);
    let err = s.fails(
        &[
            "-b",
            "127.0.0.1:0",
            "--no-control-socket",
            "builtin:hello?x=1",
        ],
        &[],
        1,
    );
    assert_error_line(&err, expected);
    let err = s.fails(&["--check-config", "builtin:debug?x=1"], &[], 1);
    assert_error_line(
        &err,
        "invalid value 'builtin:debug?x=1' for APP: builtin:debug: unknown option 'x': expected \
         boot_sleep=SECONDS, boot_exit=CODE or fail_load=1",
    );
}

#[test]
fn help_and_version_exit_zero() {
    let s = Scratch::new();
    let out = s.run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("gunicornd {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // It says which Python it embeds, or that it has none.
    assert!(
        version.contains(" embedded)\n") || version.contains("(built without Python)\n"),
        "{version}"
    );
    let out = s.run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--limit-request-field_size"), "{help}");
    assert!(help.contains("[default: 2048]"), "{help}");
}
