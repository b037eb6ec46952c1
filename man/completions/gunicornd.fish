complete -c gunicornd -s c -l config -d 'The config file to read: TOML, or a gunicorn Python config file (FILE.py: its plain values are read as settings; its post_worker_init, pre_request, post_request, worker_int and worker_abort hooks run in the workers) [default: ./gunicornd.toml if it exists]' -r -F
complete -c gunicornd -s b -l bind -d 'Address to listen on: HOST, HOST:PORT, [IPV6]:PORT, unix:PATH or fd://FD. Repeat to listen on several [default: 127.0.0.1:8000, or 0.0.0.0:$PORT if PORT is set]' -r
complete -c gunicornd -l backlog -d 'Maximum number of pending connections (the listen() backlog) [default: 2048]' -r
complete -c gunicornd -s w -l workers -d 'Number of worker processes [default: 1, or $WEB_CONCURRENCY if set]' -r
complete -c gunicornd -s k -l worker-class -d 'What a worker is: sync (gunicornd\'s own worker serving APP, one request per connection), gthread (the same with keep-alive, requests run by --threads threads) or command (each worker runs PROGRAM, given after --, on the listeners inherited from fd 3, with sd_notify for readiness and heartbeat) [default: sync]' -r
complete -c gunicornd -l boot-grace -d 'Seconds after which a command worker that has sent nothing on its NOTIFY_SOCKET counts as booted (a program that ignores the protocol); one that sent anything is booted only by READY=1. 0: only READY=1 boots a worker [default: 1]' -r
complete -c gunicornd -l halt-on-boot-error -d 'Halt the server when a worker exits with code 3 (failed to boot) or 4 (app failed to load), or roll a reload back, as gunicorn does; --halt-on-boot-error=false restarts such workers like any crash, with crash-loop backoff [default: true]' -r
complete -c gunicornd -s t -l timeout -d 'Seconds a worker may go silent before it is killed and replaced; 0 disables the check [default: 30]' -r
complete -c gunicornd -l graceful-timeout -d 'Seconds workers get to finish their requests after a graceful stop or restart before they are killed [default: 30]' -r
complete -c gunicornd -l upgrade-timeout -d 'Seconds a new master started by USR2 or gunicornctl upgrade has to boot all its workers; past it the old master kills it and keeps serving [default: 60]' -r
complete -c gunicornd -l upgrade-mode -d 'What USR2 and gunicornctl upgrade do: fork (start a new master that takes over, as gunicorn does) or in-place (exec the new binary in the master\'s own process, keeping its pid) [default: fork]' -r
complete -c gunicornd -l header-timeout -d 'Seconds a client has to send a whole request head; past it the worker answers 408 and closes (applies with --timeout 0 too) [default: 10]' -r
complete -c gunicornd -l body-timeout -d 'Seconds a worker waits for a client to send more of a request body or to read more of a response before it gives up on it (at most half of --timeout, so that a waiting worker is never taken for a hung one) [default: 30]' -r
complete -c gunicornd -l body-buffer -d 'Request bodies with a Content-Length of up to this many bytes are read by the worker before the app is called, while it serves other clients; larger ones are read by the app as they come [default: 65536]' -r
complete -c gunicornd -l worker-connections -d 'Connections a worker reads requests from at once (a slow client waits in this set without holding the worker) [default: 1000]' -r
complete -c gunicornd -l max-requests -d 'Requests a worker serves before it is replaced; 0 disables [default: 0]' -r
complete -c gunicornd -l max-requests-jitter -d 'Add a random 0..=INT to each worker\'s --max-requests so workers are not replaced all at once [default: 0]' -r
complete -c gunicornd -l threads -d 'Threads that run requests in each gthread worker; above 1 with the sync worker class, the class becomes gthread (as in gunicorn) [default: 1]' -r
complete -c gunicornd -l keep-alive -l keepalive -d 'Seconds a gthread worker keeps an idle connection open waiting for its next request; 0 closes every connection after its response [default: 2]' -r
complete -c gunicornd -l limit-request-line -d 'Maximum size of the HTTP request line in bytes; 0 means unlimited, values above 8190 mean 8190 [default: 4094]' -r
complete -c gunicornd -l limit-request-fields -d 'Maximum number of HTTP request header fields; 0 or above 32768 means 32768 [default: 100]' -r
complete -c gunicornd -l limit-request-field_size -l limit-request-field-size -d 'Maximum size of one HTTP request header field in bytes; 0 means 8190 [default: 8190]' -r
complete -c gunicornd -l header-map -d 'What to do with a request header field whose name has an underscore, which a WSGI environ cannot tell from the same name with a dash: drop it, refuse the request (400), or pass it on (dangerous) [default: drop]' -r
complete -c gunicornd -l forwarder-headers -d 'Comma-separated header names with underscores that a trusted front end (a unix-socket peer, or 127.0.0.1 or ::1) may send whatever --header-map says; * for any; a SCRIPT_NAME field then sets the WSGI SCRIPT_NAME [default: SCRIPT_NAME,PATH_INFO]' -r
complete -c gunicornd -s e -l env -d 'Set an environment variable for the workers. Repeatable [default: none]' -r
complete -c gunicornd -l chdir -d 'Change to this directory before loading the app; relative paths in other settings are taken from there [default: the current directory]' -r -F
complete -c gunicornd -l pythonpath -d 'A comma-separated list of directories to add to the Python path, e.g. /home/djangoprojects/myproject,/home/python/mylibrary; relative ones are taken from --chdir. For Python module:callable apps; built-in apps ignore it [default: none]' -r -f -a "(__fish_complete_directories)"
complete -c gunicornd -s u -l user -d 'Run workers as this user (a name or a uid) [default: the master\'s user]' -r
complete -c gunicornd -s g -l group -d 'Run workers as this group (a name or a gid) [default: the master\'s group]' -r
complete -c gunicornd -s m -l umask -d 'Umask for files and Unix sockets the server creates; a leading 0 means octal, as in 0022 [default: 0]' -r
complete -c gunicornd -s n -l name -d 'The server\'s name: names the default control socket (/tmp/gunicornd-UID/NAME.ctl) [default: gunicornd]' -r
complete -c gunicornd -l worker-tmp-dir -d 'Existing directory for the workers\' heartbeat files; a tmpfs such as /dev/shm avoids disk stalls [default: the system temporary directory]' -r -F
complete -c gunicornd -l access-logfile -d 'Access log file, or - for stdout [default: none, no access log]' -r
complete -c gunicornd -l access-logformat -d 'Access log format, with gunicorn\'s atoms such as %(h)s and %(r)s [default: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"]' -r
complete -c gunicornd -l error-logfile -l log-file -d 'Error log file, or - for stderr [default: -]' -r
complete -c gunicornd -l log-level -d 'Error log level: debug, info, warning, error or critical [default: info]' -r
complete -c gunicornd -l hook -d 'Run a shell command on a server event. NAME is one of on_starting, when_ready, on_reload, pre_fork, post_fork, child_exit, worker_exit, nworkers_changed, on_exit. Repeatable [default: none]' -r
complete -c gunicornd -s p -l pid -d 'Write the master\'s pid to this file [default: none]' -r -F
complete -c gunicornd -l control-socket -d 'Path of the control socket used by gunicornctl [default: $XDG_RUNTIME_DIR/gunicornd.ctl, else PIDFILE.ctl with --pid, else /tmp/gunicornd-UID/NAME.ctl]' -r -F
complete -c gunicornd -l control-socket-mode -d 'Permissions of the control socket, in octal [default: 0600]' -r
complete -c gunicornd -l control-socket-allow -d 'Also let this user (a name or a uid) use the control socket; root and the server\'s own user always may, anyone else is refused as soon as it connects. Repeatable [default: none]' -r
complete -c gunicornd -l control-socket-max-clients -d 'Most control socket connections open at once (never more than a quarter of the open-files limit); when all are taken, the one idle the longest is closed to make room [default: 256]' -r
complete -c gunicornd -l certfile -d 'PEM certificate (chain) file; with --keyfile, the listeners speak TLS [default: none]' -r -F
complete -c gunicornd -l keyfile -d 'PEM private key file for --certfile: PKCS#8, PKCS#1 (RSA) or SEC1 (EC); RSA, ECDSA or Ed25519 [default: none]' -r -F
complete -c gunicornd -l ca-certs -d 'PEM CA certificates that client certificates must be signed by [default: none]' -r -F
complete -c gunicornd -l cert-reqs -d 'Client certificates: 0 not asked for, 1 optional, 2 required (checked against --ca-certs) [default: 0]' -r
complete -c gunicornd -l ciphers -d 'Cipher suites allowed, separated by : or , in OpenSSL\'s names (ECDHE-RSA-AES128-GCM-SHA256) or rustls\' (TLS13_AES_128_GCM_SHA256); a list without a TLS 1.3 suite keeps all of them, as OpenSSL does [default: all that rustls implements]' -r
complete -c gunicornd -l ssl-version -d 'gunicorn\'s deprecated SSL version: accepted and ignored (see --tls-min-version) [default: none]' -r
complete -c gunicornd -l tls-min-version -d 'The oldest TLS version offered: 1.2 or 1.3 [default: 1.2]' -r
complete -c gunicornd -l tls-bind -d 'Only this bind (as given to --bind) speaks TLS; repeatable. Without it every listener does [default: all]' -r
complete -c gunicornd -l proxy-protocol -d 'Read a PROXY protocol header at the start of each connection: off, v1, v2 or auto (either); alone, auto. A connection without one is served as it is [default: off]' -r
complete -c gunicornd -l proxy-allow-from -d 'Comma-separated addresses and CIDR ranges that may send a PROXY header, or *; unix-socket peers always may [default: 127.0.0.1,::1]' -r
complete -c gunicornd -l forwarded-allow-ips -d 'Comma-separated addresses and CIDR ranges of trusted front ends, or *: only they may mark a request https (--secure-scheme-headers) or send --forwarder-headers fields; unix-socket peers always are [default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1]' -r
complete -c gunicornd -l secure-scheme-headers -d 'NAME=VALUE,...: a request field NAME from a trusted front end with exactly VALUE means https, with another value http [default: X-FORWARDED-PROTOCOL=ssl,X-FORWARDED-PROTO=https,X-FORWARDED-SSL=on]' -r
complete -c gunicornd -l upgrade-probe -d 'The probe of an in-place upgrade (src/arbiter/in_place.rs): check the configuration as --check-config does and whether this binary reads the state version given, then exit 0 or 1 with the reason. Only the old master passes it, on the command line' -r
complete -c gunicornd -l permit-unconventional-http-method -d 'Accept any RFC 9110 token as the request method, not only 3 to 20 characters without lower case or \'#\' [default: off]'
complete -c gunicornd -l casefold-http-method -d 'Upper-case the request method once it passed the checks (a lower-case method still needs --permit-unconventional-http-method) [default: off]'
complete -c gunicornd -l permit-unconventional-http-version -d 'Accept any HTTP/d.d version, not only HTTP/1.0 to HTTP/1.9 [default: off]'
complete -c gunicornd -l permit-obsolete-folding -d 'Accept obsolete line folding in request header fields: continuation lines are joined to their field with a space (never in Transfer-Encoding or Content-Length) [default: off]'
complete -c gunicornd -l preload -d 'Load the application code before the worker processes are forked: saves memory and speeds up booting. Without it each worker loads the app itself, so replacing the workers loads new code. For Python module:callable apps; built-in apps ignore it [default: off]'
complete -c gunicornd -l static-dotfiles -d 'Let static:DIR serve dotfiles: paths with a component that starts with a dot, such as .git/, .env or .well-known/ [default: off, they are answered 404]'
complete -c gunicornd -s D -l daemon -d 'Detach from the terminal and run in the background [default: off]'
complete -c gunicornd -l no-control-socket -d 'Do not open a control socket [default: off]'
complete -c gunicornd -l do-handshake-on-connect -d 'Accepted for gunicorn\'s sake: the handshake always runs before the request is read, in the worker\'s loop, within --header-timeout [default: off]'
complete -c gunicornd -l check-config -d 'Check the configuration and the app name, then exit: status 0 if valid, 1 (with the error) if not'
complete -c gunicornd -l print-config -d 'Print the effective settings as a config file and exit'
complete -c gunicornd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c gunicornd -s V -l version -d 'Print version'
