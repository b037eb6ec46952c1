//! `static:DIR`: serves the files under a directory (GET and HEAD).
//!
//! No request can reach outside DIR, whatever happens to the tree while it
//! is served: DIR is opened once, when the app loads, and every file is
//! opened beneath that descriptor with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`, so the kernel refuses any step out of it (a
//! `..`, an absolute symlink, a relative one that climbs out, `/proc`'s
//! magic links) during the very lookup that opens the file; there is no
//! check-then-open window for a symlink swap. Symlinks that stay inside DIR
//! resolve as usual. Before that, the path is percent-decoded and `..`
//! segments and NUL bytes are refused; dotfiles (a path component that
//! starts with `.`: `.git/`, `.env`) are refused too unless
//! `--static-dotfiles` allows them. Anything that does not open as a
//! regular file under DIR is a 404, so the answer does not reveal what
//! exists outside.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use percent_encoding::percent_decode_str;

use super::{App, AppLoadError, Request, ResponseSink};

/// Body chunk size: large enough to keep syscalls few, small enough to
/// stream big files with constant memory.
const CHUNK: usize = 64 * 1024;

/// Serves files under a root directory; see the module documentation.
pub struct StaticApp {
    /// DIR, opened `O_PATH` when the app loaded: every file is opened
    /// beneath it.
    root: OwnedFd,
    /// Serve paths with a component starting with `.`.
    dotfiles: bool,
    /// Reused for every response so streaming does not allocate per request.
    buf: Box<[u8]>,
}

impl std::fmt::Debug for StaticApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticApp")
            .field("root", &self.root)
            .field("dotfiles", &self.dotfiles)
            .finish_non_exhaustive()
    }
}

/// What a request path resolves to.
#[derive(Debug)]
enum Resolved {
    /// A regular file under the root, open, and the path to guess the
    /// content type from (the name that was asked for).
    File {
        file: File,
        meta: Box<Metadata>,
        type_from: PathBuf,
    },
    NotFound,
    Forbidden,
}

impl StaticApp {
    /// Opens `dir`; fails if it is missing or not a directory, or if the
    /// kernel cannot open files beneath it (no `openat2`: Linux before 5.6,
    /// or a seccomp filter that refuses it).
    pub fn load(dir: &str, dotfiles: bool) -> Result<Self, AppLoadError> {
        let root = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOTDIR => AppLoadError(format!("static:{dir}: '{dir}' is not a directory")),
            e => AppLoadError(format!(
                "static:{dir}: cannot use directory '{dir}': {}",
                io::Error::from(e)
            )),
        })?;
        match open_beneath(&root, Path::new(".")) {
            Ok(_) => {}
            Err(Errno::ENOSYS | Errno::EPERM) => {
                return Err(AppLoadError(format!(
                    "static:{dir}: this system does not let gunicornd open files with openat2 \
                     (Linux 5.6 or newer, not refused by a seccomp filter), which static: needs \
                     so that no request can reach outside '{dir}'"
                )))
            }
            Err(e) => {
                return Err(AppLoadError(format!(
                    "static:{dir}: cannot use directory '{dir}': {}",
                    io::Error::from(e)
                )))
            }
        }
        Ok(StaticApp {
            root,
            dotfiles,
            buf: vec![0; CHUNK].into_boxed_slice(),
        })
    }

    fn resolve(&self, raw_path: &str) -> io::Result<Resolved> {
        let Some(relative) = decode_relative_path(raw_path) else {
            return Ok(Resolved::NotFound);
        };
        if !self.dotfiles && has_dotfile(&relative) {
            return Ok(Resolved::NotFound);
        }
        let Some((file, meta)) = self.open(&relative)? else {
            return Ok(Resolved::NotFound);
        };
        if meta.is_dir() {
            let index = relative.join("index.html");
            return Ok(match self.open(&index)? {
                Some((file, meta)) if meta.is_file() => Resolved::File {
                    file,
                    meta: Box::new(meta),
                    type_from: index,
                },
                _ => Resolved::NotFound,
            });
        }
        if !meta.is_file() {
            return Ok(Resolved::NotFound);
        }
        Ok(Resolved::File {
            file,
            meta: Box::new(meta),
            type_from: relative,
        })
    }

    /// Open `relative` beneath the root (`None`: nothing servable there,
    /// an escape included). Permission errors come back as errors of kind
    /// `PermissionDenied`.
    fn open(&self, relative: &Path) -> io::Result<Option<(File, Metadata)>> {
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        match open_beneath(&self.root, relative) {
            Ok(fd) => {
                let file = File::from(fd);
                let meta = file.metadata()?;
                Ok(Some((file, meta)))
            }
            Err(e) if is_not_found(e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn serve(&mut self, req: &Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        let resolved = match self.resolve(&req.head.path) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Resolved::Forbidden,
            other => other?,
        };
        let (file, meta, type_from) = match resolved {
            Resolved::File {
                file,
                meta,
                type_from,
            } => (file, meta, type_from),
            Resolved::NotFound => return simple_response(resp, 404, "Not Found", &[]),
            Resolved::Forbidden => return simple_response(resp, 403, "Forbidden", &[]),
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

    fn for_thread(&self, _threads: usize) -> io::Result<Box<dyn App + Send>> {
        Ok(Box::new(StaticApp {
            root: self.root.try_clone()?,
            dotfiles: self.dotfiles,
            buf: vec![0; self.buf.len()].into_boxed_slice(),
        }))
    }
}

/// Open `relative` for reading beneath `root`, never outside it (module
/// documentation). `O_NONBLOCK` keeps a FIFO from blocking the worker (it
/// has no effect on regular files); the caller checks the type on the open
/// file.
fn open_beneath(root: &OwnedFd, relative: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a rename or mount elsewhere raced the lookup, and the kernel
    // asks for a retry rather than risk a wrong answer.
    let mut attempts = 0;
    loop {
        match openat2(root, relative, how) {
            Err(Errno::EINTR | Errno::EAGAIN) if attempts < 16 => attempts += 1,
            other => return other,
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

/// Whether a component of `relative` (as [`decode_relative_path`] made it)
/// starts with a dot: `.git/config`, `.env`, `a/.hidden`.
fn has_dotfile(relative: &Path) -> bool {
    relative
        .iter()
        .any(|component| component.as_bytes().starts_with(b"."))
}

/// Errors that mean "nothing servable here" rather than a server fault:
/// missing, not a directory on the way, a symlink loop, a name too long,
/// a socket file (`ENXIO`), or a step outside the root (`EXDEV`).
fn is_not_found(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOENT
            | Errno::ENOTDIR
            | Errno::ELOOP
            | Errno::ENAMETOOLONG
            | Errno::ENXIO
            | Errno::EXDEV
    )
}

fn content_type(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_string()
}

/// Send exactly `len` bytes of `file`: with `sendfile(2)` when the sink
/// can, else in chunks. A file that shrank while being sent is an error
/// (the promised Content-Length cannot be met, so the connection must not
/// be reused); bytes appended meanwhile are not sent.
fn stream(file: File, len: u64, buf: &mut [u8], resp: &mut dyn ResponseSink) -> io::Result<()> {
    use std::os::fd::AsFd;
    if resp.send_file(file.as_fd(), 0, len)? {
        return Ok(());
    }
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
    use std::fs;
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
            StaticApp::load(self.root.to_str().unwrap(), false).unwrap()
        }

        fn get(&self, path: &str) -> RecordingSink {
            call(&mut self.app(), &head("GET", path, &[]), b"")
        }

        fn get_with_dotfiles(&self, path: &str) -> RecordingSink {
            let mut app = StaticApp::load(self.root.to_str().unwrap(), true).unwrap();
            call(&mut app, &head("GET", path, &[]), b"")
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
        symlink("../secret.txt", site.root.join("relative-out")).unwrap();
        symlink("docs/../../secret.txt", site.root.join("climbs-out")).unwrap();
        symlink("/proc/self/root/etc/passwd", site.root.join("magic")).unwrap();
        // Absolute symlinks are refused even when they point inside DIR:
        // RESOLVE_BENEATH cannot tell where an absolute path leads.
        symlink(site.root.join("hello.txt"), site.root.join("absolute-in")).unwrap();
        symlink("hello.txt", site.root.join("link-in")).unwrap();
        symlink("docs", site.root.join("dir-in")).unwrap();
        symlink("../hello.txt", site.root.join("docs/up")).unwrap();
        // Leaving DIR and coming back is a step outside all the same.
        symlink("../www/hello.txt", site.root.join("out-and-in")).unwrap();
        for path in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/docs/../../secret.txt",
            "/..",
            "/hello.txt%00",
            "/link-out",
            "/dir-out/secret.txt",
            "/relative-out",
            "/climbs-out",
            "/magic",
            "/absolute-in",
            "/out-and-in",
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
        // Through a directory link, and a link that climbs but stays inside.
        let sent = site.get("/dir-in/index.html");
        assert_eq!((sent.status, sent.body_str()), (Some(200), "<h1>docs</h1>"));
        let sent = site.get("/docs/up");
        assert_eq!((sent.status, sent.body_str()), (Some(200), "hi\n"));
    }

    #[test]
    fn dotfiles_are_404_unless_allowed() {
        let site = Site::new();
        fs::create_dir(site.root.join(".git")).unwrap();
        fs::write(site.root.join(".git/config"), "[core]").unwrap();
        fs::write(site.root.join(".env"), "SECRET=1").unwrap();
        fs::create_dir(site.root.join("docs/.hidden")).unwrap();
        fs::write(site.root.join("docs/.hidden/index.html"), "hidden").unwrap();
        fs::write(site.root.join("docs/..."), "dots").unwrap();
        for path in [
            "/.git/config",
            "/.git/",
            "/.env",
            "/%2eenv",
            "/docs/.hidden/",
            "/docs/.hidden/index.html",
            "/docs/...",
        ] {
            let sent = site.get(path);
            assert_eq!(sent.status, Some(404), "{path}");
            assert_eq!(sent.body_str(), "Not Found\n", "{path}");
        }
        let sent = site.get_with_dotfiles("/.env");
        assert_eq!((sent.status, sent.body_str()), (Some(200), "SECRET=1"));
        let sent = site.get_with_dotfiles("/docs/.hidden/");
        assert_eq!((sent.status, sent.body_str()), (Some(200), "hidden"));
        // Allowing dotfiles allows no escape.
        assert_eq!(site.get_with_dotfiles("/../secret.txt").status, Some(404));
    }

    #[test]
    fn a_file_swapped_for_a_symlink_out_is_never_served() {
        let site = Site::new();
        let mut app = site.app();
        let swapped = site.root.join("swapped.txt");
        fs::write(&swapped, "mine").unwrap();
        let get = |app: &mut StaticApp| call(app, &head("GET", "/swapped.txt", &[]), b"");
        assert_eq!(get(&mut app).body_str(), "mine");
        fs::remove_file(&swapped).unwrap();
        symlink(site.parent.path().join("secret.txt"), &swapped).unwrap();
        let sent = get(&mut app);
        assert_eq!(sent.status, Some(404));
        assert!(!sent.body_str().contains("secret"));
    }

    #[test]
    fn the_root_is_the_directory_opened_at_load() {
        let site = Site::new();
        let mut app = site.app();
        // The directory moves away and something else takes its name.
        fs::rename(&site.root, site.parent.path().join("moved")).unwrap();
        fs::create_dir(&site.root).unwrap();
        fs::write(site.root.join("hello.txt"), "impostor").unwrap();
        let sent = call(&mut app, &head("GET", "/hello.txt", &[]), b"");
        assert_eq!(sent.body_str(), "hi\n");
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
        let err = StaticApp::load(missing.to_str().unwrap(), false).unwrap_err();
        assert!(err.0.contains("No such file or directory"), "{err}");
        let file = site.root.join("hello.txt");
        let err = StaticApp::load(file.to_str().unwrap(), false).unwrap_err();
        assert!(err.0.ends_with("is not a directory"), "{err}");
        assert!(StaticApp::load("", false).is_err());
        let spec = crate::app::AppSpec::parse(&format!("static:{}", missing.display())).unwrap();
        assert!(spec.load(&Default::default()).is_err());
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
