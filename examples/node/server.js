// A hello-world HTTP server written for gunicornd's `command` worker kind,
// with Node.js core modules only (no npm packages). Run it with:
//
//   gunicornd -w 2 -b 127.0.0.1:8000 -k command -- \
//       python3 examples/notify_fd.py node examples/node/server.js
//
// Each worker is this program, started by the master with the listening
// sockets already open at fds 3, 4, ... (LISTEN_FDS of them). It serves them
// with `http`, tells the master when it serves (READY=1) and that its event
// loop is alive (WATCHDOG=1), and stops on the master's signals: TERM
// gracefully (no new connections, the requests in hand finished, exit 0),
// INT and QUIT at once.
//
// Node has no AF_UNIX datagram socket in core, so it cannot send to
// NOTIFY_SOCKET itself. examples/notify_fd.py opens that socket for it and
// execs node in its own place (same pid, which the master checks), naming
// the socket in NOTIFY_FD; this program then writes each message to that fd.
// Run without the helper (`-- node examples/node/server.js`), it sends
// nothing and the master counts it as booted after --boot-grace, with no
// heartbeat check.
//
// Without LISTEN_FDS it listens on 127.0.0.1:$PORT instead: on its own, or
// as a worker of Node's `cluster` module (bench/node_cluster.js), where the
// cluster shares the port between the workers.
//
//   GET /              200 "Hello, World!\n"
//   GET /sleep?ms=N    the same after N milliseconds (at most 10000): a slow
//                      request, to watch a graceful stop finish it
//
// See examples/README.md.
'use strict';

const fs = require('node:fs');
const http = require('node:http');

const BODY = 'Hello, World!\n';
// /sleep waits at most this long, well under the master's default
// --graceful-timeout (30 s), so that a stop never has to kill it.
const MAX_SLEEP_MS = 10000;

function log(message) {
  // process.stderr is synchronous for pipes and files on Linux: each line
  // reaches the master's error log as it is written.
  process.stderr.write(`server.js[${process.pid}]: ${message}\n`);
}

// --- sd_notify ---------------------------------------------------------------

const notifyFd = process.env.NOTIFY_FD ? Number(process.env.NOTIFY_FD) : null;
if (notifyFd === null && process.env.NOTIFY_SOCKET) {
  log('NOTIFY_SOCKET is set but Node cannot send to it: run me through ' +
      'examples/notify_fd.py for readiness and heartbeat (the master now waits ' +
      'for --boot-grace instead)');
}

// One message, one datagram: a write on the connected datagram socket that
// notify_fd.py left open. A message that cannot be sent now (EAGAIN: the
// master is not reading) is dropped; the next heartbeat comes soon enough.
function notify(message) {
  if (notifyFd === null) return;
  try {
    fs.writeSync(notifyFd, message);
  } catch (err) {
    log(`cannot send ${JSON.stringify(message)} on fd ${notifyFd}: ${err.message}`);
  }
}

// Milliseconds between WATCHDOG=1 messages: half of WATCHDOG_USEC, as
// sd_notify(3) advises, or null when no heartbeat is asked for (or it is
// meant for another process).
function watchdogIntervalMs() {
  const usec = process.env.WATCHDOG_USEC;
  const pid = process.env.WATCHDOG_PID;
  if (!usec || (pid && Number(pid) !== process.pid)) return null;
  return Number(usec) / 2 / 1000;
}

// --- HTTP --------------------------------------------------------------------

let stopping = false;

function answer(res, status, body) {
  res.writeHead(status, {
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
    // During a graceful stop every connection closes after its response,
    // so that none is left open for the stop to wait for.
    ...(stopping ? { Connection: 'close' } : {}),
  });
  res.end(body);
}

function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/') {
    answer(res, 200, BODY);
  } else if (url.pathname === '/sleep') {
    const ms = Math.min(Number(url.searchParams.get('ms') ?? 1000), MAX_SLEEP_MS);
    if (!Number.isFinite(ms) || ms < 0) {
      answer(res, 400, 'ms must be a number of milliseconds\n');
      return;
    }
    log(`sleeping ${ms} ms`);
    setTimeout(() => answer(res, 200, BODY), ms);
  } else {
    answer(res, 404, 'Not Found\n');
  }
}

// Where to listen: the inherited sockets, or 127.0.0.1:$PORT.
function listenTargets() {
  const count = process.env.LISTEN_FDS;
  if (!count) {
    if (!process.env.PORT) {
      log('no LISTEN_FDS: run me as a worker of `gunicornd -k command -- node server.js` ' +
          '(or set PORT to listen on 127.0.0.1:PORT)');
      process.exit(1);
    }
    return [{ port: Number(process.env.PORT), host: '127.0.0.1' }];
  }
  const pid = process.env.LISTEN_PID;
  if (pid && Number(pid) !== process.pid) {
    log(`LISTEN_PID is ${pid}, not this process (${process.pid}): ` +
        'the sockets were meant for another process');
    process.exit(1);
  }
  // Node finds out itself whether each fd is a TCP or a unix socket.
  return Array.from({ length: Number(count) }, (_, i) => ({ fd: 3 + i }));
}

// --- lifecycle ---------------------------------------------------------------

const servers = [];

function stopGracefully() {
  if (stopping) return;
  stopping = true;
  log('graceful stop: finishing the requests in hand');
  notify('STOPPING=1');
  let open = servers.length;
  for (const server of servers) {
    // Stops accepting; the callback runs once every connection has ended.
    server.close(() => {
      if (--open === 0) {
        log('stopped');
        process.exit(0);
      }
    });
    // Idle keep-alive connections would otherwise hold the stop up (Node
    // 19+ closes them in close() too; this covers Node 18).
    server.closeIdleConnections();
  }
}

function stopNow(signal) {
  notify('STOPPING=1');
  log(`${signal}: stopping now`);
  process.exit(0);
}

function main() {
  const targets = listenTargets();
  let listening = 0;
  for (const target of targets) {
    const server = http.createServer(handle);
    servers.push(server);
    server.listen(target, () => {
      if (++listening < targets.length) return;
      const interval = watchdogIntervalMs();
      if (interval !== null) {
        // The timer runs on the event loop, so a loop that is stuck stops
        // the heartbeat and the master replaces this worker. unref: it
        // never keeps a stopping process alive.
        setInterval(() => notify('WATCHDOG=1'), interval).unref();
      }
      notify(`READY=1\nSTATUS=serving on ${targets.length} socket(s)`);
      log(`pid ${process.pid} serving (worker age ${process.env.GUNICORND_WORKER_AGE ?? '?'})`);
    });
  }
  process.on('SIGTERM', stopGracefully);
  process.on('SIGINT', () => stopNow('SIGINT'));
  process.on('SIGQUIT', () => stopNow('SIGQUIT'));
  // Node would start its inspector on USR1; the master sends it to reopen
  // log files, and this program has none of its own.
  process.on('SIGUSR1', () => log('USR1: no log files of my own to reopen'));
}

main();
