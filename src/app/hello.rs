//! `builtin:hello`: the fixed "Hello, World!" answer used to benchmark the
//! server against nginx.

use std::io;

use super::{App, Request, ResponseSink};

const BODY: &[u8] = b"Hello, World!\n";

/// Answers every request with `200 Hello, World!\n` in plain text.
///
/// The headers are built once at load time so that a request costs no
/// allocation in the app.
pub struct HelloApp {
    headers: [(String, String); 2],
}

impl HelloApp {
    pub fn new() -> Self {
        HelloApp {
            headers: [
                ("Content-Type".to_string(), "text/plain".to_string()),
                ("Content-Length".to_string(), BODY.len().to_string()),
            ],
        }
    }
}

impl Default for HelloApp {
    fn default() -> Self {
        Self::new()
    }
}

impl App for HelloApp {
    fn call(&mut self, _req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        resp.start(200, &self.headers)?;
        resp.write(BODY)
    }

    /// A fixed answer, written in one `write`.
    fn runs_inline(&self) -> bool {
        true
    }

    fn for_thread(&self, _threads: usize) -> io::Result<Box<dyn App + Send>> {
        Ok(Box::new(HelloApp::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{call, head};

    #[test]
    fn says_hello() {
        let mut app = HelloApp::new();
        let sent = call(&mut app, &head("GET", "/anything?x=1", &[]), b"");
        assert_eq!(sent.status, Some(200));
        assert_eq!(sent.header("Content-Type"), Some("text/plain"));
        assert_eq!(sent.header("Content-Length"), Some("14"));
        assert_eq!(sent.body_str(), "Hello, World!\n");
    }
}
