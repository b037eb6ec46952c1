//! `gunicornctl`: see the library (`ctl/src/lib.rs`).

fn main() -> std::process::ExitCode {
    gunicornctl::main()
}
