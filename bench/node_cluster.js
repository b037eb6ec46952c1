// Node.js's own `cluster` module running examples/node/server.js as WORKERS
// workers (default 2) on 127.0.0.1:PORT: the peer of bench/command.sh,
// which runs the same program as gunicornd `command` workers.
//
// The primary does what a Node deployment's own supervisor would: it
// starts the workers, replaces one that exits unexpectedly, and on SIGHUP
// restarts them one by one, as gunicornd's reload does: for each old
// worker, a new one is started, and once it listens the old one is retired
// with worker.disconnect(), Node's graceful way (the primary stops handing
// it connections, the worker closes its servers, finishes the requests in
// hand and exits). A HUP that arrives during a restart starts another one
// when it is done. TERM stops the workers gracefully and then the primary;
// INT and QUIT stop them at once. How the connections are shared out is
// Node's choice (NODE_CLUSTER_SCHED_POLICY: on Linux, by default, the
// primary accepts every connection and hands it to a worker in turn).
//
// Why not TERM to the worker (server.js's graceful stop under gunicornd):
// the primary may have just handed the worker a connection when the worker,
// its server closed, exits before reading that message, and the connection
// is left unanswered. With TERM, two of four trial runs (3 to 10 reloads) had a
// request that waited 3.4 s, or until the client gave up at 5 s; with
// disconnect(), which tells the primary first over the same channel, none
// of four did.
//
// Usage: PORT=8000 [WORKERS=2] node bench/node_cluster.js
'use strict';

const cluster = require('node:cluster');
const path = require('node:path');

const WORKERS = Number(process.env.WORKERS || 2);
const SERVER = path.join(__dirname, '..', 'examples', 'node', 'server.js');

function log(message) {
  process.stderr.write(`node_cluster.js[${process.pid}]: ${message}\n`);
}

if (!process.env.PORT) {
  log('usage: PORT=8000 [WORKERS=2] node bench/node_cluster.js');
  process.exit(2);
}

cluster.setupPrimary({ exec: SERVER });

// The workers serving, and those sent TERM whose exit is expected.
const live = new Set();
const retiring = new Set();
let stopping = false;
let restarting = false;
let restartsPending = 0;
let restarts = 0;

// Starts a worker; resolves once it listens, or once it has exited if it
// never does (the exit handler then starts another).
function start() {
  const worker = cluster.fork();
  live.add(worker);
  return new Promise((resolve) => {
    worker.once('listening', resolve);
    worker.once('exit', resolve);
  });
}

cluster.on('exit', (worker, code, signal) => {
  live.delete(worker);
  const retired = retiring.delete(worker);
  if (stopping) {
    if (live.size === 0 && retiring.size === 0) process.exit(0);
    return;
  }
  if (retired) return;
  log(`worker ${worker.process.pid} exited unexpectedly (${signal || code}); starting another`);
  start();
});

async function rollingRestart() {
  restarting = true;
  while (restartsPending > 0 && !stopping) {
    restartsPending--;
    const n = ++restarts;
    const old = [...live];
    log(`rolling restart ${n} of ${old.length} workers`);
    for (const worker of old) {
      await start();
      if (stopping) break;
      live.delete(worker);
      retiring.add(worker);
      worker.disconnect();
    }
    log(`rolling restart ${n} done`);
  }
  restarting = false;
}

process.on('SIGHUP', () => {
  // The same words as gunicornd's log line, which the bench counts.
  log('Hang up: rolling restart');
  restartsPending++;
  if (!restarting) rollingRestart();
});

function stop(signal) {
  if (stopping && signal === 'SIGTERM') return;
  stopping = true;
  const workers = [...live, ...retiring];
  log(`${signal}: stopping ${workers.length} workers`);
  if (workers.length === 0) process.exit(0);
  for (const worker of workers) {
    if (signal === 'SIGTERM') worker.disconnect();
    else worker.process.kill(signal);
  }
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGQUIT', () => stop('SIGQUIT'));

for (let i = 0; i < WORKERS; i++) start();
