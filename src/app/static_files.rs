//! `static:DIR`: serves the files under a directory (GET and HEAD).
//!
//! No request can reach outside DIR: the path is percent-decoded, `..`
//! segments and NUL bytes are refused, and the file is resolved with
//! `canonicalize` (following symlinks) and must still lie under DIR's own
//! canonical path. Anything that does not resolve to a regular file under DIR
//! is a 404, so the answer does not reveal what exists outside.

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::{App, AppLoadError, Request, ResponseSink};

/// Body chunk size: large enough to keep syscalls few, small enough to
/// stream big files with constant memory.
const CHUNK: usize = 64 * 1024;

/// Serves files under a root directory; see the module documentation.
pub struct StaticApp {
    /// Canonical (symlink-free, absolute) root.
    root: PathBuf,
    /// Reused for every response so streaming does not allocate per request.
    buf: Box<[u8]>,
}

impl std::fmt::Debug for StaticApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticApp")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// What a request path resolves to.
#[derive(Debug)]
enum Resolved {
    /// A regular file under the root: its canonical path, and the path to
    /// guess the content type from (the name that was asked for).
    File {
        path: PathBuf,
        type_from: PathBuf,
    },
    NotFound,
    Forbidden,
}

impl StaticApp {
    /// Fails if `dir` is missing or not a directory.
    pub fn load(dir: &str) -> Result<Self, AppLoadError> {
        let root = fs::canonicalize(dir).map_err(|e| {
            AppLoadError(format!("static:{dir}: cannot use directory '{dir}': {e}"))
        })?;
        if !root.is_dir() {
            return Err(AppLoadError(format!(
                "static:{dir}: '{dir}' is not a directory"
            )));
        }
        Ok(StaticApp {
            root,
            buf: vec![0; CHUNK].into_boxed_slice(),
        })
    }

    fn resolve(&self, raw_path: &str) -> io::Result<Resolved> {
        let Some(relative) = decode_relative_path(raw_path) else {
            return Ok(Resolved::NotFound);
        };
        let asked = self.root.join(&relative);
        let Some(found) = self.canonical_under_root(&asked)? else {
            return Ok(Resolved::NotFound);
        };
        if found.is_dir() {
            let index = asked.join("index.html");
            return Ok(match self.canonical_under_root(&index)? {
                Some(path) if path.is_file() => Resolved::File {
                    path,
                    type_from: index,
                },
                _ => Resolved::NotFound,
            });
        }
        Ok(Resolved::File {
            path: found,
            type_from: asked,
        })
    }

    /// `path` with symlinks resolved, if it exists and lies under the root.
    /// `Forbidden` surfaces as an error of kind `PermissionDenied`.
    fn canonical_under_root(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        match fs::canonicalize(path) {
            Ok(found) if found.starts_with(&self.root) => Ok(Some(found)),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn serve(&mut self, req: &Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        let resolved = match self.resolve(&req.head.path) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Resolved::Forbidden,
            other => other?,
        };
        let (path, type_from) = match resolved {
            Resolved::File { path, type_from } => (path, type_from),
            Resolved::NotFound => return simple_response(resp, 404, "Not Found", &[]),
            Resolved::Forbidden => return simple_response(resp, 403, "Forbidden", &[]),
        };
        let (file, meta) = match open_regular(&path) {
            Ok(Some(opened)) => opened,
            Ok(None) => return simple_response(resp, 404, "Not Found", &[]),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return simple_response(resp, 403, "Forbidden", &[])
            }
            Err(e) if is_not_found(&e) => return simple_response(resp, 404, "Not Found", &[]),
            Err(e) => return Err(e),
        };
        let mut headers = vec![
            ("Content-Type".to_string(), content_type(&type_from)),
            ("Content-Length".to_string(), meta.len().to_string()),
        ];
        if let Ok(modified) = meta.modified() {
            headers.push((
                "Last-Modified".to_string(),
                httpdate::fmt_http_date(modified),
            ));
        }
        resp.start(200, &headers)?;
        if req.head.method == "HEAD" {
            return Ok(());
        }
        stream(file, meta.len(), &mut self.buf, resp)
    }
}

impl App for StaticApp {
    fn call(&mut self, req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        match req.head.method.as_str() {
            "GET" | "HEAD" => self.serve(&req, resp),
            _ => simple_response(
                resp,
                405,
                "Method Not Allowed",
                &[("Allow".to_string(), "GET, HEAD".to_string())],
            ),
        }
    }
}

/// The request path as a relative filesystem path, or `None` if it must not
/// be served: not absolute, a NUL byte, or a `..` segment (after decoding,
/// so `%2e%2e` counts). Empty and `.` segments are dropped.
fn decode_relative_path(raw_path: &str) -> Option<PathBuf> {
    if !raw_path.starts_with('/') {
        return None;
    }
    let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
    if decoded.contains(&0) {
        return None;
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return None,
            name => relative.push(OsStr::from_bytes(name)),
        }
    }
    Some(relative)
}

/// Errors that mean "nothing servable here" rather than a server fault.
/// (Matched on errno: the `ErrorKind`s for these are newer than our MSRV.)
fn is_not_found(e: &io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
        )
}

/// Open `path` if it is a regular file. `O_NONBLOCK` keeps a FIFO swapped in
/// after the checks from blocking the worker; it has no effect on regular
/// files. The type is checked again on the open file.
fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(meta.is_file().then_some((file, meta)))
}

fn content_type(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_string()
}

/// Send exactly `len` bytes of `file` in chunks. A file that shrank while
/// being sent is an error (the promised Content-Length cannot be met, so the
/// connection must not be reused); bytes appended meanwhile are not sent.
fn stream(file: File, len: u64, buf: &mut [u8], resp: &mut dyn ResponseSink) -> io::Result<()> {
    let mut remaining = file.take(len);
    let mut sent = 0u64;
    loop {
        let n = match remaining.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        resp.write(&buf[..n])?;
        sent += n as u64;
    }
    if sent < len {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("file shrank while being sent: {sent} of {len} bytes"),
        ));
    }
    Ok(())
}

fn simple_response(
    resp: &mut dyn ResponseSink,
    status: u16,
    reason: &str,
    extra: &[(String, String)],
) -> io::Result<()> {
    let body = format!("{reason}\n");
    let mut headers = vec![
        ("Content-Type".to_string(), "text/plain".to_string()),
        ("Content-Length".to_string(), body.len().to_string()),
    ];
    headers.extend_from_slice(extra);
    resp.start(status, &headers)?;
    resp.write(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use tempfile::TempDir;

    use super::*;
    use crate::app::testing::{call, head, RecordingSink};

    /// A root with some files, inside a parent that also holds a secret.
    struct Site {
        parent: TempDir,
        root: PathBuf,
    }

    impl Site {
        fn new() -> Site {
            let parent = tempfile::tempdir().unwrap();
            let root = parent.path().join("www");
            fs::create_dir(&root).unwrap();
            fs::write(parent.path().join("secret.txt"), "secret").unwrap();
            fs::write(root.join("hello.txt"), "hi\n").unwrap();
            fs::write(root.join("page.html"), "<p>").unwrap();
            fs::write(root.join("data.json"), "{}").unwrap();
            fs::write(root.join("style.css"), "a{}").unwrap();
            fs::write(root.join("blob"), [0u8, 1, 2]).unwrap();
            fs::write(root.join("with space.txt"), "spaced").unwrap();
            fs::create_dir(root.join("docs")).unwrap();
            fs::write(root.join("docs/index.html"), "<h1>docs</h1>").unwrap();
            fs::create_dir(root.join("empty")).unwrap();
            Site { parent, root }
        }

        fn app(&self) -> StaticApp {
            StaticApp::load(self.root.to_str().unwrap()).unwrap()
        }

        fn get(&self, path: &str) -> RecordingSink {
            call(&mut self.app(), &head("GET", path, &[]), b"")
        }
    }

    #[test]
    fn serves_files_with_type_and_length() {
        let site = Site::new();
        let cases = [
            ("/hello.txt", "text/plain", "hi\n".as_bytes()),
            ("/page.html", "text/html", b"<p>"),
            ("/data.json", "application/json", b"{}"),
            ("/style.css", "text/css", b"a{}"),
            ("/blob", "application/octet-stream", &[0, 1, 2]),
            ("/with%20space.txt", "text/plain", b"spaced"),
            ("//hello.txt", "text/plain", b"hi\n"),
            ("/./hello.txt", "text/plain", b"hi\n"),
        ];
        for (path, ctype, body) in cases {
            let sent = site.get(path);
            assert_eq!(sent.status, Some(200), "{path}");
            assert_eq!(sent.header("Content-Type"), Some(ctype), "{path}");
            assert_eq!(
                sent.header("Content-Length"),
                Some(body.len().to_string().as_str())
            );
            assert!(sent
                .header("Last-Modified")
                .is_some_and(|v| v.ends_with(" GMT")));
            assert_eq!(sent.body, body, "{path}");
        }
    }

    #[test]
    fn directory_serves_its_index_or_404() {
        let site = Site::new();
        for path in ["/docs", "/docs/"] {
            let sent = site.get(path);
            assert_eq!(sent.status, Some(200), "{path}");
            assert_eq!(sent.header("Content-Type"), Some("text/html"));
            assert_eq!(sent.body_str(), "<h1>docs</h1>");
        }
        assert_eq!(site.get("/empty/").status, Some(404));
        assert_eq!(site.get("/").status, Some(404));
    }

    #[test]
    fn missing_is_404() {
        let site = Site::new();
        let too_long = format!("/{}", "a".repeat(300));
        for path in [
            "/nope",
            "/hello.txt/x",
            "/docs/nope.html",
            "*",
            "",
            &too_long,
        ] {
            let sent = site.get(path);
            assert_eq!(sent.status, Some(404), "{path}");
            assert_eq!(sent.body_str(), "Not Found\n");
        }
    }

    #[test]
    fn refuses_escapes() {
        let site = Site::new();
        symlink(
            site.parent.path().join("secret.txt"),
            site.root.join("link-out"),
        )
        .unwrap();
        symlink(site.parent.path(), site.root.join("dir-out")).unwrap();
        symlink(site.root.join("hello.txt"), site.root.join("link-in")).unwrap();
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/docs/../../secret.txt",
            "/..",
            "/hello.txt%00",
            "/link-out",
            "/dir-out/secret.txt",
            "/../../../../../../etc/passwd",
        ] {
            let sent = site.get(path);
            assert_eq!(sent.status, Some(404), "{path}");
            assert!(!sent.body_str().contains("secret"), "{path}");
        }
        // A symlink that stays inside DIR is fine, and it is typed by its own name.
        let sent = site.get("/link-in");
        assert_eq!((sent.status, sent.body_str()), (Some(200), "hi\n"));
        assert_eq!(
            sent.header("Content-Type"),
            Some("application/octet-stream")
        );
    }

    #[test]
    fn head_has_headers_but_no_body() {
        let site = Site::new();
        let sent = call(&mut site.app(), &head("HEAD", "/hello.txt", &[]), b"");
        assert_eq!(sent.status, Some(200));
        assert_eq!(sent.header("Content-Length"), Some("3"));
        assert!(sent.body.is_empty());
    }

    #[test]
    fn other_methods_are_405() {
        let site = Site::new();
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let sent = call(&mut site.app(), &head(method, "/hello.txt", &[]), b"x");
            assert_eq!(sent.status, Some(405), "{method}");
            assert_eq!(sent.header("Allow"), Some("GET, HEAD"));
        }
    }

    #[test]
    fn streams_large_files_in_chunks() {
        let site = Site::new();
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        fs::write(site.root.join("big.bin"), &data).unwrap();
        let sent = site.get("/big.bin");
        assert_eq!(
            sent.header("Content-Length"),
            Some(data.len().to_string().as_str())
        );
        assert!(sent.body == data);
        assert!(sent.chunks.iter().all(|&n| n <= CHUNK), "{:?}", sent.chunks);
        assert!(sent.chunks.len() >= 3);
    }

    #[test]
    fn special_files_are_404() {
        let site = Site::new();
        let fifo = site.root.join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        assert_eq!(site.get("/pipe").status, Some(404));
    }

    #[test]
    fn unreadable_file_is_403() {
        // root reads everything regardless of mode bits.
        if nix::unistd::geteuid().is_root() {
            return;
        }
        let site = Site::new();
        let locked = site.root.join("locked.txt");
        fs::write(&locked, "no").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(site.get("/locked.txt").status, Some(403));
    }

    #[test]
    fn load_needs_an_existing_directory() {
        let site = Site::new();
        let missing = site.root.join("missing");
        let err = StaticApp::load(missing.to_str().unwrap()).unwrap_err();
        assert!(err.0.contains("No such file or directory"), "{err}");
        let file = site.root.join("hello.txt");
        let err = StaticApp::load(file.to_str().unwrap()).unwrap_err();
        assert!(err.0.ends_with("is not a directory"), "{err}");
        assert!(StaticApp::load("").is_err());
        assert!(crate::app::load(&format!("static:{}", missing.display()), &[]).is_err());
    }

    #[test]
    fn shrinking_file_is_an_error() {
        let mut sink = RecordingSink::default();
        sink.start(200, &[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "abc").unwrap();
        let err = stream(File::open(&path).unwrap(), 10, &mut [0; 4], &mut sink).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }
}
