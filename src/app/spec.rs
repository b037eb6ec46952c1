//! The grammar of an app spec (the positional `APP` argument, or the config
//! file's `app` key), in one place:
//!
//! ```text
//! builtin:hello
//! builtin:echo
//! builtin:debug[?OPTIONS]    OPTIONS: boot_sleep=SECONDS&boot_exit=CODE&fail_load=1
//! static:DIR                 everything after the prefix is the directory
//! MODULE[:EXPRESSION]        a Python WSGI app, gunicorn's forms: `module`,
//!                            `module:name`, `module:factory()`,
//!                            `module:factory(literal, key=literal)`
//! ```
//!
//! The master checks the spec with [`AppSpec::parse`] when it reads its
//! configuration (for `--check-config`, at startup and on reload) and a
//! worker loads what the same function returns, so a spec is accepted by
//! both or by neither, with the same message. What only the worker can know
//! (whether `static:DIR` exists, relative to its working directory) is left
//! to [`AppSpec::load`].

use super::debug::DebugOptions;
use super::{App, AppLoadError, DebugApp, EchoApp, HelloApp, LoadOptions, StaticApp};

/// The valid forms, for error messages.
pub const APP_SPECS: &str = "builtin:hello, builtin:echo, builtin:debug[?OPTIONS], static:DIR \
     or a Python WSGI app as MODULE[:NAME] or MODULE:FACTORY(ARGS)";

/// A parsed app spec: which app, with its load-time options.
#[derive(Debug, Clone, PartialEq)]
pub enum AppSpec {
    Hello,
    Echo,
    Debug(DebugOptions),
    Static(String),
    /// A Python WSGI app (`module:expression`).
    Python {
        module: String,
        expression: String,
    },
}

impl AppSpec {
    /// Parse `spec`; the error says what is wrong and what the valid forms
    /// are. Has no side effects.
    pub fn parse(spec: &str) -> Result<AppSpec, String> {
        if let Some(dir) = spec.strip_prefix("static:") {
            // Paths may contain '?': no query string here.
            return if dir.is_empty() {
                Err("static: needs a directory, as in static:DIR".to_owned())
            } else {
                Ok(AppSpec::Static(dir.to_owned()))
            };
        }
        let Some(builtin) = spec.strip_prefix("builtin:") else {
            return parse_python(spec);
        };
        let (name, options) = match builtin.split_once('?') {
            Some((name, options)) => (name, Some(options)),
            None => (builtin, None),
        };
        match (name, options) {
            ("hello", None) => Ok(AppSpec::Hello),
            ("echo", None) => Ok(AppSpec::Echo),
            ("debug", options) => Ok(AppSpec::Debug(DebugOptions::parse(
                options.unwrap_or_default(),
            )?)),
            ("hello" | "echo", Some(_)) => Err(format!(
                "builtin:{name} takes no options (only builtin:debug does): expected {APP_SPECS}"
            )),
            _ => Err(format!(
                "unknown built-in app '{name}': expected {APP_SPECS}"
            )),
        }
    }

    /// Load the app. Called in the worker after fork: `builtin:debug` may
    /// sleep or end the process here on purpose (see [`DebugApp`]).
    pub fn load(&self, options: &LoadOptions<'_>) -> Result<Box<dyn App>, AppLoadError> {
        Ok(match self {
            AppSpec::Hello => Box::new(HelloApp::new()),
            AppSpec::Echo => Box::new(EchoApp),
            AppSpec::Debug(debug) => Box::new(DebugApp::load(debug)?),
            AppSpec::Static(dir) => Box::new(StaticApp::load(dir, options.static_dotfiles)?),
            AppSpec::Python { module, expression } => {
                load_python(module, expression, options.pythonpath)?
            }
        })
    }
}

/// `module[:expression]`: the module a dotted Python name; the expression
/// is checked further when the worker evaluates it (as gunicorn does).
fn parse_python(spec: &str) -> Result<AppSpec, String> {
    let (module, expression) = spec.split_once(':').unwrap_or((spec, ""));
    let identifier = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    };
    if module.is_empty() || !module.split('.').all(identifier) {
        return Err(format!(
            "'{spec}' is not an app: expected {APP_SPECS} (a Python module is a dotted name such as myproject.wsgi)"
        ));
    }
    if spec.contains(':') && expression.trim().is_empty() {
        return Err(format!("'{spec}': nothing after ':'; expected MODULE:NAME"));
    }
    if !cfg!(feature = "python") {
        return Err(format!(
            "'{spec}' is a Python WSGI app, but this gunicornd was built without Python: \
             build it with the default features (cargo build --release) on a machine with Python 3 \
             and its shared library"
        ));
    }
    Ok(AppSpec::Python {
        module: module.to_string(),
        expression: expression.trim().to_string(),
    })
}

#[cfg(feature = "python")]
fn load_python(
    module: &str,
    expression: &str,
    pythonpath: &[std::path::PathBuf],
) -> Result<Box<dyn App>, AppLoadError> {
    let app = crate::python::PythonApp {
        module: module.to_string(),
        expression: expression.to_string(),
    };
    let path = crate::python::ImportPath {
        pythonpath: pythonpath.to_vec(),
    };
    crate::python::load(&app, &path)
}

#[cfg(not(feature = "python"))]
fn load_python(
    _module: &str,
    _expression: &str,
    _pythonpath: &[std::path::PathBuf],
) -> Result<Box<dyn App>, AppLoadError> {
    // parse_python refuses Python apps in this build.
    Err(AppLoadError(
        "this gunicornd was built without Python".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(spec: &str) -> String {
        AppSpec::parse(spec).expect_err(spec)
    }

    #[test]
    fn valid_forms() {
        assert_eq!(AppSpec::parse("builtin:hello"), Ok(AppSpec::Hello));
        assert_eq!(AppSpec::parse("builtin:echo"), Ok(AppSpec::Echo));
        for debug in ["builtin:debug", "builtin:debug?"] {
            assert_eq!(
                AppSpec::parse(debug),
                Ok(AppSpec::Debug(DebugOptions::default())),
                "{debug}"
            );
        }
        assert_eq!(
            AppSpec::parse("builtin:debug?boot_sleep=1.5"),
            Ok(AppSpec::Debug(
                DebugOptions::parse("boot_sleep=1.5").unwrap()
            ))
        );
        assert_eq!(
            AppSpec::parse("static:/srv/a?b"),
            Ok(AppSpec::Static("/srv/a?b".into()))
        );
        assert_eq!(AppSpec::parse("static:."), Ok(AppSpec::Static(".".into())));
    }

    #[test]
    fn each_error_names_the_valid_forms() {
        let forms = format!("expected {APP_SPECS}");
        assert!(parse_err("my app:app").contains(&forms));
        assert!(parse_err("").contains(&forms));
        assert!(parse_err("1module").contains("a Python module is a dotted name"));
        assert_eq!(
            parse_err("myapp:"),
            "'myapp:': nothing after ':'; expected MODULE:NAME"
        );
        assert_eq!(
            parse_err("builtin:hello?x=1"),
            format!("builtin:hello takes no options (only builtin:debug does): {forms}")
        );
        assert!(parse_err("builtin:echo?").starts_with("builtin:echo takes no options"));
        assert_eq!(
            parse_err("builtin:nope"),
            format!("unknown built-in app 'nope': {forms}")
        );
        assert_eq!(
            parse_err("builtin:"),
            format!("unknown built-in app '': {forms}")
        );
        assert_eq!(
            parse_err("static:"),
            "static: needs a directory, as in static:DIR"
        );
    }

    #[test]
    fn python_apps_in_gunicorns_forms() {
        for (spec, module, expression) in [
            ("myapp", "myapp", ""),
            (
                "myproject.wsgi:application",
                "myproject.wsgi",
                "application",
            ),
            ("app:create_app()", "app", "create_app()"),
            (
                "app:create_app('x', debug=True)",
                "app",
                "create_app('x', debug=True)",
            ),
        ] {
            let parsed = AppSpec::parse(spec);
            if cfg!(feature = "python") {
                assert_eq!(
                    parsed,
                    Ok(AppSpec::Python {
                        module: module.into(),
                        expression: expression.into()
                    }),
                    "{spec}"
                );
            } else {
                assert!(
                    parsed.unwrap_err().contains("built without Python"),
                    "{spec}"
                );
            }
        }
    }

    #[test]
    fn debug_options_are_part_of_the_grammar() {
        assert_eq!(
            parse_err("builtin:debug?x=1"),
            "builtin:debug: unknown option 'x': expected boot_sleep=SECONDS, boot_exit=CODE \
             or fail_load=1"
        );
        assert!(parse_err("builtin:debug?boot_exit=300").contains("invalid boot_exit=300"));
    }

    #[test]
    fn loads_what_it_parsed() {
        for spec in ["builtin:hello", "builtin:echo", "builtin:debug", "static:."] {
            let parsed = AppSpec::parse(spec).unwrap();
            assert!(parsed.load(&LoadOptions::default()).is_ok(), "{spec}");
        }
        let missing = AppSpec::parse("static:/nonexistent/gunicornd").unwrap();
        assert!(
            missing.load(&LoadOptions::default()).is_err(),
            "a missing directory is a load error"
        );
    }
}
