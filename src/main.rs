//! `gunicornd`: load the configuration, then hand over to the arbiter.

use std::io::Write;
use std::process::ExitCode;

use gunicornd::config::{Loader, Startup};

fn main() -> ExitCode {
    let loader = Loader::from_process();
    let startup = match loader.load() {
        Ok(startup) => startup,
        Err(e) => {
            if let Some(usage) = &e.usage {
                eprintln!("{usage}");
            }
            eprintln!("Error: {e}");
            return exit_code(e.exit_code);
        }
    };
    match startup {
        Startup::Exit(code, text) => {
            print_out(&text);
            exit_code(code)
        }
        Startup::PrintConfig(settings) => {
            print_out(&settings.to_toml());
            ExitCode::SUCCESS
        }
        Startup::CheckConfig(_) => ExitCode::SUCCESS,
        Startup::Probe(version) => match gunicornd::arbiter::probe_answer(version) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("Error: {why}");
                ExitCode::FAILURE
            }
        },
        Startup::Run(settings) => exit_code(gunicornd::arbiter::run(loader, settings)),
    }
}

/// Write to stdout; a closed pipe (`gunicornd --help | head`) is not an error.
fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
