/*
 * A hello-world HTTP server written for gunicornd's `command` worker kind,
 * in C with nothing but libc. Build and run it with:
 *
 *   cc -O2 -Wall -Wextra -o examples/c/server examples/c/server.c
 *   gunicornd -w 2 -b 127.0.0.1:8000 -k command -- examples/c/server
 *
 * Each worker is this program, started by the master with the listening
 * sockets already open at fds 3, 4, ... (LISTEN_FDS of them). It serves one
 * request at a time, like gunicorn's sync worker, closing each connection
 * after its response; tells the master over NOTIFY_SOCKET (the sd_notify
 * protocol) when it serves (READY=1) and, from its main loop, that it is
 * alive (WATCHDOG=1); and stops on the master's signals: TERM gracefully
 * (the request in hand is finished, then exit 0), INT and QUIT at once.
 *
 *   GET /              200 "Hello, World!\n"
 *   GET /sleep?ms=N    the same after N milliseconds (at most 10000): a slow
 *                      request, to watch a graceful stop finish it
 *
 * See examples/README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FIRST_FD 3
#define MAX_LISTENERS 64
#define MAX_REQUEST_HEAD 8192
/* /sleep waits at most this long: the main loop sends no heartbeat while it
 * serves a request, and this stays well under half the master's default
 * --timeout (30 s) and under its --graceful-timeout. */
#define MAX_SLEEP_MS 10000
/* A client that sends or reads nothing for this long is dropped. */
#define CLIENT_TIMEOUT_S 10

static const char BODY[] = "Hello, World!\n";

static volatile sig_atomic_t graceful_stop;

static void on_term(int sig) {
    (void)sig;
    graceful_stop = 1;
}

static void on_quick_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_usr1(int sig) {
    /* USR1 asks to reopen log files; this program has none of its own. */
    (void)sig;
}

#define LOG(...)                                                                                  \
    do {                                                                                          \
        fprintf(stderr, "server.c[%ld]: ", (long)getpid());                                       \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fputc('\n', stderr);                                                                      \
    } while (0)

/* --- sd_notify ------------------------------------------------------------ */

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;

/* Opens the datagram socket for NOTIFY_SOCKET: a path, or an abstract name
 * written with a leading '@' (its address is then a NUL byte and the name,
 * without a trailing NUL, and its length says where it ends). */
static void notify_open(void) {
    const char *name = getenv("NOTIFY_SOCKET");
    size_t len;
    if (!name || !*name)
        return;
    len = strlen(name);
    if (len >= sizeof notify_addr.sun_path) {
        LOG("NOTIFY_SOCKET is too long: %s", name);
        return;
    }
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, name, len);
    if (name[0] == '@')
        notify_addr.sun_path[0] = '\0';
    notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (notify_fd < 0)
        LOG("socket for NOTIFY_SOCKET: %s", strerror(errno));
}

/* Sends one message. The master learns the sender's pid from the kernel
 * (SCM_CREDENTIALS), which is why the worker sends it itself. Non-blocking:
 * a master that does not read never stalls the server; the message is
 * dropped instead (the next heartbeat comes soon enough). */
static void notify(const char *message) {
    if (notify_fd < 0)
        return;
    if (sendto(notify_fd, message, strlen(message), MSG_NOSIGNAL,
               (struct sockaddr *)&notify_addr, notify_addr_len) < 0)
        LOG("cannot send %s: %s", message, strerror(errno));
}

/* Milliseconds between WATCHDOG=1 messages: half of WATCHDOG_USEC, as
 * sd_notify(3) advises, or -1 when no heartbeat is asked for (or it is meant
 * for another process). */
static long watchdog_interval_ms(void) {
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    long ms;
    if (!usec || (pid && atol(pid) != (long)getpid()))
        return -1;
    ms = atol(usec) / 2000;
    return ms > 0 ? ms : 1;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- HTTP ------------------------------------------------------------------ */

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void answer(int fd, int status, const char *reason, const char *body, int head_only) {
    char head[256];
    int len = snprintf(head, sizeof head,
                       "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n",
                       status, reason, strlen(body));
    if (write_all(fd, head, (size_t)len) == 0 && !head_only)
        write_all(fd, body, strlen(body));
}

static void sleep_ms(long ms) {
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) < 0 && errno == EINTR) {
    }
}

/* Reads the request head (up to the blank line), answers it, closes. */
static void serve(int fd) {
    char buf[MAX_REQUEST_HEAD + 1], method[16], target[1024];
    size_t used = 0;
    int head_only;
    struct timeval timeout = {CLIENT_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    for (;;) {
        ssize_t n = recv(fd, buf + used, MAX_REQUEST_HEAD - used, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto done; /* closed, reset or timed out before a whole head */
        used += (size_t)n;
        buf[used] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
        if (used == MAX_REQUEST_HEAD) {
            answer(fd, 431, "Request Header Fields Too Large", "Request head too large\n", 0);
            goto done;
        }
    }
    if (sscanf(buf, "%15s %1023s HTTP/1.", method, target) != 2) {
        answer(fd, 400, "Bad Request", "Bad Request\n", 0);
        goto done;
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (!head_only && strcmp(method, "GET") != 0) {
        answer(fd, 405, "Method Not Allowed", "Method Not Allowed\n", 0);
    } else if (strcmp(target, "/") == 0) {
        answer(fd, 200, "OK", BODY, head_only);
    } else if (strncmp(target, "/sleep", 6) == 0 && (target[6] == '\0' || target[6] == '?')) {
        const char *ms_arg = strstr(target, "ms=");
        char *end = NULL;
        long ms = ms_arg ? strtol(ms_arg + 3, &end, 10) : 1000;
        if (ms_arg && (end == ms_arg + 3 || (*end != '\0' && *end != '&') || ms < 0)) {
            answer(fd, 400, "Bad Request", "ms must be a number of milliseconds\n", head_only);
            goto done;
        }
        if (ms > MAX_SLEEP_MS)
            ms = MAX_SLEEP_MS;
        LOG("sleeping %ld ms", ms);
        sleep_ms(ms);
        answer(fd, 200, "OK", BODY, head_only);
    } else {
        answer(fd, 404, "Not Found", "Not Found\n", head_only);
    }
done:
    close(fd);
}

/* --- lifecycle ------------------------------------------------------------- */

/* The listening sockets the master passed, at fds 3 .. 3+LISTEN_FDS-1. */
static int inherited_sockets(struct pollfd *fds) {
    const char *count = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    int n, i;
    if (!count) {
        LOG("no LISTEN_FDS: run me as a worker of `gunicornd -k command -- examples/c/server` "
            "(or under systemd socket activation)");
        exit(1);
    }
    if (pid && atol(pid) != (long)getpid()) {
        LOG("LISTEN_PID is %s, not this process: the sockets were meant for another process", pid);
        exit(1);
    }
    n = atoi(count);
    if (n < 1 || n > MAX_LISTENERS) {
        LOG("LISTEN_FDS=%s: expected 1 to %d sockets", count, MAX_LISTENERS);
        exit(1);
    }
    for (i = 0; i < n; i++) {
        int fd = FIRST_FD + i;
        /* Every worker accepts on the same sockets: after poll() says a
         * connection waits, another worker may take it first, and a
         * blocking accept() would then hang this loop until the next one.
         * The accepted sockets are blocking all the same (accept4 does not
         * pass O_NONBLOCK on). Close-on-exec: nothing this program might
         * run should hold the master's sockets. */
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            LOG("fd %d is not open: %s", fd, strerror(errno));
            exit(1);
        }
        fds[i].fd = fd;
        fds[i].events = POLLIN;
    }
    return n;
}

static void on_signal(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    /* No SA_RESTART: only ppoll() below runs with TERM unblocked, and it
     * must return when TERM comes. */
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

int main(void) {
    struct pollfd fds[MAX_LISTENERS];
    sigset_t term, waiting;
    int n = inherited_sockets(fds), i;
    long interval = watchdog_interval_ms(), next_beat = 0;
    char status[64];

    /* TERM is blocked except while the loop waits in ppoll(), so that it
     * never interrupts a request: the request in hand is finished, then
     * the loop sees the flag and the program exits. INT and QUIT end the
     * program at once, wherever it is. */
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &waiting);
    sigdelset(&waiting, SIGTERM);
    on_signal(SIGTERM, on_term);
    on_signal(SIGINT, on_quick_stop);
    on_signal(SIGQUIT, on_quick_stop);
    on_signal(SIGUSR1, on_usr1);

    notify_open();
    snprintf(status, sizeof status, "READY=1\nSTATUS=serving on %d socket(s)", n);
    notify(status);
    LOG("pid %ld serving (worker age %s)", (long)getpid(),
        getenv("GUNICORND_WORKER_AGE") ? getenv("GUNICORND_WORKER_AGE") : "?");

    while (!graceful_stop) {
        struct timespec wait, *waitp = NULL;
        if (interval > 0) {
            /* The heartbeat comes from this loop, so a loop that is stuck
             * stops it and the master replaces this worker. */
            long now = now_ms();
            if (now >= next_beat) {
                notify("WATCHDOG=1");
                next_beat = now + interval;
            }
            wait.tv_sec = (next_beat - now) / 1000;
            wait.tv_nsec = (next_beat - now) % 1000 * 1000000L;
            waitp = &wait;
        }
        if (ppoll(fds, (nfds_t)n, waitp, &waiting) < 0) {
            if (errno == EINTR)
                continue;
            LOG("poll: %s", strerror(errno));
            return 1;
        }
        for (i = 0; i < n; i++) {
            if (fds[i].revents & POLLIN) {
                int client = accept4(fds[i].fd, NULL, NULL, SOCK_CLOEXEC);
                if (client >= 0)
                    serve(client);
                /* else EAGAIN (another worker took it) or a connection that
                 * failed before it was accepted: nothing to do. */
            }
        }
    }
    notify("STOPPING=1");
    LOG("graceful stop: no request in hand, exiting");
    return 0;
}
