//! Python WSGI apps (PEP 3333), embedded with pyo3: the HTTP work stays in
//! Rust and only the application call, and the iteration of its result,
//! run in Python.
//!
//! The interpreter is initialised in each worker after fork (never in the
//! master, which runs no Python), with Python's own signal handlers left
//! out: the worker's stay in charge. `loader.py` holds what is simpler in
//! Python (gunicorn's app-spec evaluation, `wsgi.file_wrapper`).

mod environ;
mod objects;

use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use nix::sys::signal::Signal;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyModule};

use crate::app::{App, AppLoadError, Request, ResponseSink};

/// What a `module:expression` app spec names, and where to look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonApp {
    pub module: String,
    /// `name`, `a.b`, `factory()`, `factory(1, key="x")`; empty means
    /// gunicorn's default, `application`.
    pub expression: String,
}

/// Where imports look first: `--pythonpath` and the working directory, as
/// gunicorn does; and the virtualenv of `VIRTUAL_ENV`.
#[derive(Debug, Clone, Default)]
pub struct ImportPath {
    pub pythonpath: Vec<PathBuf>,
}

/// A loaded WSGI callable.
pub struct WsgiApp {
    app: Py<PyAny>,
    /// The environ keys that are the same for every request, copied into
    /// each request's environ (a C-level dict copy).
    base_environ: Py<pyo3::types::PyDict>,
    /// `wsgi.file_wrapper`: a result of this type is sent with `sendfile(2)`.
    file_wrapper: Py<PyAny>,
}

/// Initialise Python in this (worker) process and import the app.
pub fn load(spec: &PythonApp, path: &ImportPath) -> Result<Box<dyn App>, AppLoadError> {
    Python::initialize();
    Python::attach(|py| {
        let helpers = helpers(py).map_err(|e| load_error(py, &e))?;
        prepare_path(py, path).map_err(|e| load_error(py, &e))?;
        enable_tracebacks_on_abort(py);
        let app = helpers
            .getattr("load")
            .and_then(|f| f.call1((&spec.module, &spec.expression)))
            .map_err(|e| load_error(py, &e))?;
        let errors = Py::new(py, objects::Errors).map_err(|e| load_error(py, &e))?;
        let file_wrapper = helpers
            .getattr("FileWrapper")
            .map_err(|e| load_error(py, &e))?;
        let base_environ =
            environ::base(py, &errors, &file_wrapper).map_err(|e| load_error(py, &e))?;
        Ok(Box::new(WsgiApp {
            app: app.unbind(),
            base_environ: base_environ.unbind(),
            file_wrapper: file_wrapper.unbind(),
        }) as Box<dyn App>)
    })
}

/// The module built from `loader.py`.
fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let code = CString::new(include_str!("loader.py")).expect("no NUL in loader.py");
    PyModule::from_code(py, &code, c"gunicornd_loader.py", c"gunicornd_loader")
}

/// `sys.path`: `--pythonpath` entries first, then the working directory
/// (gunicorn inserts it at the front), and a virtualenv's site-packages.
fn prepare_path(py: Python<'_>, path: &ImportPath) -> PyResult<()> {
    let sys = py.import("sys")?;
    let sys_path = sys.getattr("path")?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    sys_path.call_method1("insert", (0, cwd.display().to_string()))?;
    // As gunicorn: each entry in turn goes to the front (so the last one
    // listed is searched first), made absolute, unless already there.
    for dir in &path.pythonpath {
        let dir = cwd.join(dir).display().to_string();
        if !sys_path.contains(&dir)? {
            sys_path.call_method1("insert", (0, dir))?;
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let version = sys.getattr("version_info")?;
        let (major, minor): (u8, u8) = (
            version.getattr("major")?.extract()?,
            version.getattr("minor")?.extract()?,
        );
        let site = PathBuf::from(venv).join(format!("lib/python{major}.{minor}/site-packages"));
        if site.is_dir() {
            py.import("site")?
                .call_method1("addsitedir", (site.display().to_string(),))?;
        }
    }
    Ok(())
}

/// A worker killed for a heartbeat timeout gets SIGABRT: let Python print
/// where it was stuck first. faulthandler's fatal-signal handler dumps the
/// traceback, puts back the handler it replaced (the worker's, which exits
/// 1) and raises the signal again.
fn enable_tracebacks_on_abort(py: Python<'_>) {
    let result = py.import("faulthandler").and_then(|fh| {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("all_threads", true)?;
        fh.call_method("enable", (), Some(&kwargs))
    });
    if let Err(e) = result {
        tracing::debug!("faulthandler not enabled: {e}");
    }
}

/// An exception at import time, as the error log shows it (with its
/// traceback; the worker then exits 4).
fn load_error(py: Python<'_>, e: &PyErr) -> AppLoadError {
    AppLoadError(traceback_text(py, e))
}

/// The exception with its traceback, as Python would print it.
fn traceback_text(py: Python<'_>, e: &PyErr) -> String {
    let formatted = helpers(py).and_then(|h| {
        h.getattr("traceback_text")?
            .call1((e.value(py), e.traceback(py)))?
            .extract::<String>()
    });
    formatted.unwrap_or_else(|_| e.to_string())
}

impl App for WsgiApp {
    fn call(&mut self, req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        Python::attach(|py| {
            objects::take_io_failure();
            self.call_app(py, req, resp).map_err(|e| {
                if let Some(io) = objects::take_io_failure() {
                    return io;
                }
                // The worker logs it as "Error handling request ...".
                io::Error::other(format!("\n{}", traceback_text(py, &e).trim_end()))
            })
        })
    }

    /// The same callable for one of `threads` threads: they share the app
    /// object, and with more than one, the environ says `wsgi.multithread`
    /// (gunicorn's meaning) and the GIL is released while a thread reads
    /// from or writes to its client.
    fn for_thread(&self, threads: usize) -> io::Result<Box<dyn App + Send>> {
        let multithread = threads > 1;
        if multithread {
            objects::THREADED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Python::attach(|py| {
            let base_environ = self.base_environ.bind(py).copy()?;
            base_environ.set_item("wsgi.multithread", multithread)?;
            Ok(Box::new(WsgiApp {
                app: self.app.clone_ref(py),
                base_environ: base_environ.unbind(),
                file_wrapper: self.file_wrapper.clone_ref(py),
            }) as Box<dyn App + Send>)
        })
        .map_err(|e: PyErr| io::Error::other(e.to_string()))
    }
}

impl WsgiApp {
    fn call_app(
        &self,
        py: Python<'_>,
        req: Request<'_>,
        resp: &mut dyn ResponseSink,
    ) -> PyResult<()> {
        let input = objects::Input::new(py, req.body)?;
        let environ = environ::build(
            py,
            self.base_environ.bind(py),
            req.head,
            req.peer,
            req.server,
            req.scheme,
            &input,
        )?;
        if let Some(proxied) = req.proxied {
            environ::add_proxy(py, &environ, proxied)?;
        }
        let responder = objects::Responder::new(py, resp)?;
        let hooks = HOOKS
            .get()
            .filter(|h| h.pre_request.is_some() || h.post_request.is_some());
        let req_info = match hooks {
            Some(h) => Some(request_info(py, h, req.head)?),
            None => None,
        };
        // Whatever happens, the objects are detached below.
        let outcome = (|| {
            if let (Some(h), Some(info)) = (hooks, &req_info) {
                if let Some(pre) = &h.pre_request {
                    pre.bind(py).call1((h.worker.bind(py), info))?;
                }
            }
            self.run(py, &environ, &responder)
        })();
        if let (Some(h), Some(info)) = (hooks, &req_info) {
            if let Some(post) = &h.post_request {
                let (status, sent) = responder.borrow(py).summary();
                let resp_info = h
                    .helpers
                    .bind(py)
                    .getattr("ResponseInfo")?
                    .call1((status, sent))?;
                // A failing post_request is logged; the response stands.
                if let Err(e) = post
                    .bind(py)
                    .call1((h.worker.bind(py), info, &environ, resp_info))
                {
                    tracing::error!("Exception in post_request hook\n{}", traceback_text(py, &e));
                }
            }
        }
        // The objects the app may have kept refer to this request only.
        input.borrow_mut(py).detach();
        responder.borrow_mut(py).detach();
        outcome
    }

    fn run(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, pyo3::types::PyDict>,
        responder: &Py<objects::Responder>,
    ) -> PyResult<()> {
        let result = self.app.bind(py).call1((environ, responder.bind(py)))?;
        let outcome = (|| {
            if result.get_type().is(self.file_wrapper.bind(py))
                && self.send_file(py, &result, responder)?
            {
                return Ok(());
            }
            // The most common result, a plain list, is walked in place.
            if let Ok(list) = result.cast_exact::<PyList>() {
                for item in list.iter() {
                    send_chunk(py, &item, responder)?;
                }
            } else {
                for item in result.try_iter()? {
                    send_chunk(py, &item?, responder)?;
                }
            }
            // An empty body: the headers still go out.
            responder.borrow_mut(py).send_headers()
        })();
        // PEP 3333: close() is called whatever happened. A plain list or
        // tuple has none (and asking would build an AttributeError).
        let plain = result.is_exact_instance_of::<PyList>()
            || result.is_exact_instance_of::<pyo3::types::PyTuple>();
        if !plain && result.hasattr("close")? {
            if let Err(e) = result.call_method0("close") {
                if outcome.is_ok() {
                    return Err(e);
                }
            }
        }
        outcome
    }
}

/// One item of the response iterable, which must be bytes.
fn send_chunk(
    py: Python<'_>,
    item: &Bound<'_, PyAny>,
    responder: &Py<objects::Responder>,
) -> PyResult<()> {
    let chunk = item.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "the response iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let bytes = chunk.as_bytes();
    if bytes.is_empty() {
        return Ok(());
    }
    responder.borrow_mut(py).write(bytes)
}

impl WsgiApp {
    /// A `wsgi.file_wrapper` over a regular file, sent with `sendfile(2)`;
    /// false when it must be iterated instead.
    fn send_file(
        &self,
        py: Python<'_>,
        wrapper: &Bound<'_, PyAny>,
        responder: &Py<objects::Responder>,
    ) -> PyResult<bool> {
        let range: Option<(i32, u64, u64)> = wrapper.call_method0("sendfile_range")?.extract()?;
        let Some((fd, offset, len)) = range else {
            return Ok(false);
        };
        let sent = responder.borrow_mut(py).send_file(fd, offset, len)?;
        Ok(sent)
    }
}

/// Fork with CPython's protocol (`PyOS_BeforeFork`, then
/// `PyOS_AfterFork_Parent` or `PyOS_AfterFork_Child`), for a master that
/// loaded a Python app before forking (`--preload`). `fork` is the call
/// that forks.
pub fn fork_with(
    fork: impl FnOnce() -> nix::Result<nix::unistd::ForkResult>,
) -> nix::Result<nix::unistd::ForkResult> {
    Python::attach(|_py| {
        // SAFETY: called with the GIL held, around a fork, as CPython
        // requires of code that forks a process running Python.
        unsafe { pyo3::ffi::PyOS_BeforeFork() };
        let forked = fork();
        match forked {
            Ok(nix::unistd::ForkResult::Child) => unsafe { pyo3::ffi::PyOS_AfterFork_Child() },
            _ => unsafe { pyo3::ffi::PyOS_AfterFork_Parent() },
        }
        forked
    })
}

/// Run a gunicorn Python configuration file (`-c gunicorn.conf.py`) and
/// return its plain module-level values (numbers, strings, booleans, lists;
/// not functions or modules) as JSON. It runs in a forked child that exits
/// afterwards, so that the master never hosts Python for it.
pub fn config_file_values(path: &std::path::Path) -> Result<serde_json::Value, String> {
    use std::io::Read as _;
    use std::os::fd::AsRawFd;
    let (mut read, write) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // SAFETY: the process is single-threaded here (configuration loading);
    // the child only runs Python and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read);
            let out = evaluate_config(path);
            let mut w = write;
            let _ = std::io::Write::write_all(&mut w, out.as_bytes());
            // SAFETY: ends the child without running the parent's atexit work.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(write);
            let mut text = String::new();
            let read_result = read.read_to_string(&mut text);
            let _ = nix::sys::wait::waitpid(child, None);
            let _ = read.as_raw_fd();
            read_result.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let reply: serde_json::Value = serde_json::from_str(&text)
                .map_err(|_| format!("cannot evaluate {}: {text}", path.display()))?;
            match reply.get("error").and_then(|e| e.as_str()) {
                Some(error) => Err(format!("cannot evaluate {}:\n{error}", path.display())),
                None => Ok(reply),
            }
        }
        Err(e) => Err(format!("cannot evaluate {}: fork: {e}", path.display())),
    }
}

/// In the forked child: `{"settings": {...}}` or
/// `{"error": "traceback"}`.
fn evaluate_config(path: &std::path::Path) -> String {
    Python::initialize();
    Python::attach(|py| {
        let result = helpers(py).and_then(|h| {
            let settings = h
                .getattr("config_settings")?
                .call1((path.display().to_string(),))?;
            let json = py.import("json")?;
            let settings: String = json.call_method1("dumps", (settings,))?.extract()?;
            Ok(format!("{{\"settings\": {settings}}}"))
        });
        result
            .unwrap_or_else(|e| serde_json::json!({ "error": traceback_text(py, &e) }).to_string())
    })
}

/// The worker hooks of a Python configuration file, with the `worker`
/// object they are given; set once per worker.
struct ConfigHooks {
    worker: Py<PyAny>,
    pre_request: Option<Py<PyAny>>,
    post_request: Option<Py<PyAny>>,
    /// Run on QUIT/INT, before the worker exits.
    worker_int: Option<Py<PyAny>>,
    /// Run on ABRT (a heartbeat timeout), before the worker exits.
    worker_abort: Option<Py<PyAny>>,
    helpers: Py<PyModule>,
}

static HOOKS: std::sync::OnceLock<ConfigHooks> = std::sync::OnceLock::new();

/// The server hooks of a gunicorn Python configuration file, in a worker
/// whose app is loaded: run `post_worker_init(worker)` (an exception fails
/// the worker's boot), keep `pre_request`/`post_request` for each call, and
/// arm `worker_int`/`worker_abort` for their signals.
pub fn worker_hooks(config: &std::path::Path, age: u64) -> Result<(), String> {
    Python::initialize();
    Python::attach(|py| {
        let run = || -> PyResult<()> {
            let h = helpers(py)?;
            let path = config.display().to_string();
            let hook = |name: &str| -> PyResult<Option<Py<PyAny>>> {
                let found = h.getattr("config_hook")?.call1((&path, name))?;
                Ok((!found.is_none()).then(|| found.unbind()))
            };
            let worker = h.getattr("WorkerInfo")?.call1((age,))?;
            let hooks = ConfigHooks {
                worker: worker.clone().unbind(),
                pre_request: hook("pre_request")?,
                post_request: hook("post_request")?,
                worker_int: hook("worker_int")?,
                worker_abort: hook("worker_abort")?,
                helpers: h.clone().unbind(),
            };
            let mut armed = Vec::new();
            if hooks.worker_int.is_some() {
                armed.extend([Signal::SIGINT, Signal::SIGQUIT]);
            }
            if hooks.worker_abort.is_some() {
                armed.push(Signal::SIGABRT);
            }
            let _ = HOOKS.set(hooks);
            for sig in armed {
                arm(py, sig)?;
            }
            // Last: a worker whose post_worker_init ran has all its hooks.
            if let Some(post_worker_init) = hook("post_worker_init")? {
                post_worker_init.bind(py).call1((&worker,))?;
            }
            Ok(())
        };
        run().map_err(|e| traceback_text(py, &e))
    })
}

/// Make `sig` run its hook before the worker exits: a Python-level handler
/// (so that Python code that never returns to the worker's loop still
/// notices the signal between two bytecodes), with the C-level handler
/// left as it was (the worker's, or faulthandler's in front of it for
/// ABRT): `signal.signal` would replace it with Python's.
fn arm(py: Python<'_>, sig: Signal) -> PyResult<()> {
    let signum = sig as libc::c_int;
    // SAFETY: a zeroed sigaction is a valid out-parameter; the saved one is
    // put back unchanged.
    let mut saved: libc::sigaction = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaction(signum, std::ptr::null(), &mut saved) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    let handler = pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"gunicornd_quit"),
        None,
        move |_args, _kwargs| -> PyResult<()> {
            crate::worker::quit(sig);
            Ok(())
        },
    )?;
    let set = py
        .import("signal")
        .and_then(|s| s.call_method1("signal", (signum, handler)));
    // SAFETY: re-installs the disposition read above.
    if unsafe { libc::sigaction(signum, &saved, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    set?;
    crate::worker::signals::hook(sig);
    Ok(())
}

/// From the worker's signal handler: have Python run the handler `arm`
/// set for `sig` at its next bytecode. Async-signal-safe
/// (`PyErr_SetInterruptEx` is documented so).
/// Runs `f`, a pool thread's whole life, with a Python thread state of its
/// own kept throughout (and the GIL released): otherwise each call into the
/// app from a thread that has none creates and destroys one
/// (`PyGILState_Ensure`), an mmap and a munmap of its 16 KiB frame stack
/// per request, each munmap a TLB shootdown across the worker's threads.
/// Without a running interpreter (a built-in app) it just runs `f`.
pub fn with_thread_state<F: FnOnce() + Send>(f: F) {
    // SAFETY: a query of the interpreter's state, valid without the GIL.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return f();
    }
    Python::attach(|py| py.detach(f));
}

pub fn interrupt(sig: Signal) {
    // SAFETY: called only for an armed signal, so Python is initialised.
    unsafe { pyo3::ffi::PyErr_SetInterruptEx(sig as libc::c_int) };
}

/// The hook of a quick stop (`worker_int`) or abort (`worker_abort`); an
/// exception in it is logged, and the worker exits anyway.
pub fn run_signal_hook(sig: Signal) {
    let Some(hooks) = HOOKS.get() else { return };
    let (name, hook) = match sig {
        Signal::SIGABRT => ("worker_abort", &hooks.worker_abort),
        _ => ("worker_int", &hooks.worker_int),
    };
    let Some(hook) = hook else { return };
    Python::attach(|py| {
        if let Err(e) = hook.bind(py).call1((hooks.worker.bind(py),)) {
            tracing::error!("Exception in {name} hook\n{}", traceback_text(py, &e));
        }
    });
}

/// `req` for the request hooks.
fn request_info<'py>(
    py: Python<'py>,
    hooks: &ConfigHooks,
    head: &crate::http::RequestHead,
) -> PyResult<Bound<'py, PyAny>> {
    let version = format!("HTTP/{}.{}", head.version.0, head.version.1);
    hooks.helpers.bind(py).getattr("RequestInfo")?.call1((
        &head.method,
        &head.uri,
        &head.path,
        &head.query,
        version,
        head.headers.clone(),
    ))
}
