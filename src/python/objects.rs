//! The Python objects of one WSGI call: `wsgi.input`, `wsgi.errors`, and
//! `start_response` with its `write` callable.
//!
//! `wsgi.input` and `start_response` refer to the request's body reader and
//! response sink, which live only for the call: they hold raw pointers to
//! them, valid until `detach` is called right after the call returns. An
//! app that keeps one and uses it later gets an exception, never a
//! dangling pointer.

use std::io::{self, Read};

use pyo3::exceptions::{PyAssertionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::app::ResponseSink;
use crate::http::HOP_BY_HOP;

/// Set once the app runs on several threads (`App::for_thread`): only then
/// is the GIL worth releasing around the client's I/O.
pub static THREADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run `io` (a read from or write to the client, which may wait for it)
/// with the GIL released, so that the worker's other threads run Python
/// meanwhile (the gthread worker). A single-threaded worker keeps it.
fn without_gil<T: Send>(io: impl FnOnce() -> T) -> T {
    if !THREADED.load(std::sync::atomic::Ordering::Relaxed) {
        return io();
    }
    /// The closure touches no Python object, only the request's body reader
    /// or response sink, which this thread alone uses for the call; they
    /// are not `Send` only because they are borrowed through raw pointers.
    struct OneThread<F>(F);
    // SAFETY: see above: the value never leaves this thread, which runs it
    // while `detach` waits.
    unsafe impl<F> Send for OneThread<F> {}
    let io = OneThread(io);
    // SAFETY: only called from methods Python called, so the thread is attached.
    let py = unsafe { Python::assume_attached() };
    py.detach(move || {
        let io = io;
        (io.0)()
    })
}

fn detached() -> PyErr {
    PyValueError::new_err("this object belongs to a request that is over")
}

/// `wsgi.input`: the request body, already de-chunked, never read past its
/// end.
#[pyclass(unsendable)]
pub struct Input {
    reader: Option<*mut (dyn Read + 'static)>,
    /// Read ahead by `readline`, not yet returned.
    buf: Vec<u8>,
    eof: bool,
}

impl Input {
    pub fn new(py: Python<'_>, reader: &mut dyn Read) -> PyResult<Py<Input>> {
        // SAFETY: only the lifetime is erased; `detach` clears the pointer
        // before the reader's borrow ends (see the module doc).
        let reader: *mut (dyn Read + 'static) = unsafe { std::mem::transmute(reader) };
        Py::new(
            py,
            Input {
                reader: Some(reader),
                buf: Vec::new(),
                eof: false,
            },
        )
    }

    pub fn detach(&mut self) {
        self.reader = None;
    }

    /// Read more into `buf`; false at the end of the body.
    fn fill(&mut self) -> PyResult<bool> {
        if self.eof {
            return Ok(false);
        }
        let reader = self.reader.ok_or_else(detached)?;
        let mut chunk = [0u8; 8192];
        // SAFETY: valid until detach() (module doc); the GIL serialises use.
        let chunk_ref = &mut chunk;
        let n = without_gil(move || unsafe { (*reader).read(chunk_ref) }).map_err(io_error)?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// Up to `limit` bytes (all with `None`), or up to and including the
    /// first newline when `line`.
    fn take(&mut self, limit: Option<usize>, line: bool) -> PyResult<Vec<u8>> {
        loop {
            let newline = line
                .then(|| self.buf.iter().position(|&b| b == b'\n'))
                .flatten();
            let enough = match (newline, limit) {
                (Some(i), Some(l)) => Some((i + 1).min(l)),
                (Some(i), None) => Some(i + 1),
                (None, Some(l)) if self.buf.len() >= l => Some(l),
                _ => None,
            };
            if let Some(n) = enough {
                return Ok(self.buf.drain(..n).collect());
            }
            if !self.fill()? {
                return Ok(std::mem::take(&mut self.buf));
            }
        }
    }
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    size.filter(|s| *s >= 0).map(|s| s as usize)
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.take(size_arg(size), false)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.take(size_arg(size), true)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|h| *h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.take(None, true)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.take(None, true)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// `wsgi.errors`: text written to it goes to the error log.
#[pyclass]
pub struct Errors;

#[pymethods]
impl Errors {
    fn write(&self, text: &str) {
        let text = text.trim_end_matches('\n');
        if !text.is_empty() {
            tracing::error!("{text}");
        }
    }

    fn writelines(&self, lines: Vec<String>) {
        for l in lines {
            self.write(&l);
        }
    }

    fn flush(&self) {}
}

/// `start_response`, and the response it builds: status and headers are
/// held until the first non-empty body chunk (or the end of an empty
/// body), as PEP 3333 requires.
#[pyclass(unsendable)]
pub struct Responder {
    sink: Option<*mut (dyn ResponseSink + 'static)>,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    sent: bool,
}

impl Responder {
    pub fn new(py: Python<'_>, sink: &mut dyn ResponseSink) -> PyResult<Py<Responder>> {
        // SAFETY: as for Input: cleared by detach() before the borrow ends.
        let sink: *mut (dyn ResponseSink + 'static) = unsafe { std::mem::transmute(sink) };
        Py::new(
            py,
            Responder {
                sink: Some(sink),
                status: None,
                headers: Vec::new(),
                sent: false,
            },
        )
    }

    pub fn detach(&mut self) {
        self.sink = None;
    }

    /// The status the app set (if any) and whether it went out.
    pub fn summary(&self) -> (Option<u16>, bool) {
        (self.status, self.sent)
    }

    fn sink(&mut self) -> PyResult<&mut dyn ResponseSink> {
        let sink = self.sink.ok_or_else(detached)?;
        // SAFETY: valid until detach(); the GIL serialises use.
        Ok(unsafe { &mut *sink })
    }

    /// Send the status line and headers if not yet sent.
    pub fn send_headers(&mut self) -> PyResult<()> {
        if self.sent {
            return Ok(());
        }
        let status = self.status.ok_or_else(|| {
            PyAssertionError::new_err("the application did not call start_response")
        })?;
        let headers = std::mem::take(&mut self.headers);
        self.sink()?.start(status, &headers).map_err(io_error)?;
        self.sent = true;
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> PyResult<()> {
        self.send_headers()?;
        let sink = self.sink()?;
        without_gil(move || sink.write(data)).map_err(io_error)
    }

    /// `len` bytes of the file `fd` from `offset` with `sendfile(2)`;
    /// false if the sink cannot (the caller iterates the file instead).
    pub fn send_file(&mut self, fd: i32, offset: u64, len: u64) -> PyResult<bool> {
        self.send_headers()?;
        // SAFETY: the app's file object keeps `fd` open for the call.
        let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sink = self.sink()?;
        without_gil(move || sink.send_file(file, offset, len)).map_err(io_error)
    }
}

#[pymethods]
impl Responder {
    /// `start_response(status, response_headers, exc_info=None)`; returns
    /// the legacy `write` callable.
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        slf: Bound<'_, Self>,
        status: &str,
        headers: Vec<(String, String)>,
        exc_info: Option<Bound<'_, PyTuple>>,
    ) -> PyResult<Py<Writer>> {
        let py = slf.py();
        {
            let mut me = slf.borrow_mut();
            match &exc_info {
                // After the headers went out nothing can be changed:
                // re-raise what the app caught (PEP 3333).
                Some(info) if !info.is_none() && me.sent => {
                    return Err(PyErr::from_value(info.get_item(1)?));
                }
                // Before, the new status and headers replace the old.
                Some(info) if !info.is_none() => {}
                _ if me.status.is_some() => {
                    return Err(PyAssertionError::new_err("Response headers already set!"));
                }
                _ => {}
            }
            me.status = Some(parse_status(status)?);
            for (name, _) in &headers {
                if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(PyAssertionError::new_err(format!(
                        "{name} is a hop-by-hop header"
                    )));
                }
            }
            me.headers = headers;
        }
        Py::new(
            py,
            Writer {
                responder: slf.unbind(),
            },
        )
    }
}

/// The `write(data)` callable `start_response` returns.
#[pyclass(unsendable)]
pub struct Writer {
    responder: Py<Responder>,
}

#[pymethods]
impl Writer {
    fn __call__(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.responder.borrow_mut(py).write(data)
    }
}

/// `"200 OK"` → 200.
fn parse_status(status: &str) -> PyResult<u16> {
    status
        .split_whitespace()
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..1000).contains(code))
        .ok_or_else(|| PyValueError::new_err(format!("Invalid status {status:?}")))
}

thread_local! {
    /// The I/O error behind the last `OSError` raised here (a client that
    /// went away, a malformed chunked body): the worker answers it as an
    /// I/O failure (a 400, or nothing), not as an app failure (a 500).
    static IO_FAILURE: std::cell::RefCell<Option<io::Error>> = const { std::cell::RefCell::new(None) };
}

/// The I/O error that made the call fail, if one did.
pub fn take_io_failure() -> Option<io::Error> {
    IO_FAILURE.with(|f| f.borrow_mut().take())
}

fn io_error(e: io::Error) -> PyErr {
    let err = pyo3::exceptions::PyOSError::new_err(e.to_string());
    IO_FAILURE.with(|f| *f.borrow_mut() = Some(e));
    err
}
