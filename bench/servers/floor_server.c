/* The floor: a WebSocket echo server that does only the system calls.
 *
 * One thread, level-triggered epoll. Per readiness: one read() into the
 * connection's buffer; every complete frame in it is unmasked in place and
 * echoed (same first byte, unmasked, minimal length encoding); the echoes of
 * one read go out in one writev(). What it skips that a real server must do:
 * UTF-8 validation, fragmentation rules, limits, timers, any application.
 * It answers the upgrade (RFC 6455 4.2.2, SHA-1 and base64 below), pings
 * with pongs and a close with a 1000 close, then closes TCP. No broadcast.
 *
 * bench/run.py builds it at run time (cc -O2, into a temp directory) and
 * runs it as the "floor-c" server:  floor_server --port P [--host H]
 * The gap between it and a Python server is what Python (the interpreter,
 * the event loop and the library) costs per message on this machine.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define MAX_IOV 1024

/* -- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept ------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *m = calloc(total, 1);
    memcpy(m, msg, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* -- connections ---------------------------------------------------------- */

typedef struct {
    int fd;
    int upgraded;
    int closing;            /* a close was answered: close TCP once out is written */
    unsigned char *in;      /* received, not yet consumed */
    size_t in_len, in_cap;
    unsigned char *out;     /* what a short write left unsent */
    size_t out_len, out_off, out_cap;
} conn_t;

static int ep;

static void drop(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void keep_unsent(conn_t *c, struct iovec *iov, int n, size_t skip) {
    for (int i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) { skip -= len; continue; }
        size_t part = len - skip;
        if (c->out_len + part > c->out_cap) {
            c->out_cap = (c->out_len + part) * 2;
            c->out = realloc(c->out, c->out_cap);
        }
        memcpy(c->out + c->out_len, (char *)iov[i].iov_base + skip, part);
        c->out_len += part;
        skip = 0;
    }
}

/* writev the iovecs; what the kernel does not take is copied to c->out and
 * reading stops until EPOLLOUT has drained it. Returns -1 on error. */
static int send_iov(conn_t *c, struct iovec *iov, int n) {
    size_t want = 0;
    for (int i = 0; i < n; i++) want += iov[i].iov_len;
    if (!want) return 0;
    ssize_t w = 0;
    if (c->out_len == 0) {
        w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno != EAGAIN) return -1;
            w = 0;
        }
    }
    if ((size_t)w < want) {
        keep_unsent(c, iov, n, (size_t)w);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

static int upgrade(conn_t *c) {
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return c->in_len > 65536 ? -1 : 0;
    size_t head = (size_t)(end - c->in) + 4;
    char key[128] = {0};
    for (unsigned char *p = c->in; p < end;) {
        unsigned char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        if (!eol) break;
        if (eol - p > 18 && strncasecmp((char *)p, "sec-websocket-key:", 18) == 0) {
            unsigned char *v = p + 18, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if (ve - v < 100) memcpy(key, v, (size_t)(ve - v));
        }
        p = eol + 2;
    }
    if (!key[0]) return -1;
    char buf[160];
    snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char digest[20];
    sha1((unsigned char *)buf, strlen(buf), digest);
    char accept[32];
    base64(digest, 20, accept);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    struct iovec iov = {resp, (size_t)n};
    if (send_iov(c, &iov, 1) < 0) return -1;
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= head;
    c->upgraded = 1;
    return 0;
}

static void unmask(unsigned char *p, size_t n, const unsigned char key[4]) {
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

/* Echo every complete frame in c->in; keep an incomplete one. -1: drop. */
static int frames(conn_t *c) {
    static struct iovec iov[MAX_IOV];
    static unsigned char heads[MAX_IOV / 2][10];
    int n = 0;
    size_t pos = 0, need = 0;
    while (c->in_len - pos >= 2 && !c->closing) {
        unsigned char *f = c->in + pos;
        if (!(f[1] & 0x80)) return -1; /* client frames are masked (RFC 6455 5.3) */
        uint64_t len = f[1] & 127;
        size_t hl = 6;
        if (len == 126) hl = 8;
        else if (len == 127) hl = 14;
        if (c->in_len - pos < hl) break;
        if (len == 126) len = (uint64_t)f[2] << 8 | f[3];
        else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | f[2 + i];
            if (len > ((uint64_t)1 << 31)) return -1;
        }
        if (c->in_len - pos < hl + len) {
            need = hl + len;
            break;
        }
        unsigned char *payload = f + hl;
        unmask(payload, (size_t)len, f + hl - 4);
        int opcode = f[0] & 15;
        unsigned char b0 = f[0];
        pos += hl + len;
        if (opcode == 10) continue; /* pong */
        if (opcode == 8) {
            b0 = 0x88;
            payload = (unsigned char *)"\x03\xe8";
            len = 2;
            c->closing = 1;
        } else if (opcode == 9) {
            b0 = 0x8A;
        }
        unsigned char *h = heads[n / 2];
        size_t k;
        h[0] = b0;
        if (len < 126) { h[1] = (unsigned char)len; k = 2; }
        else if (len < 65536) { h[1] = 126; h[2] = (unsigned char)(len >> 8); h[3] = (unsigned char)len; k = 4; }
        else { h[1] = 127; for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)(len >> (56 - 8 * i)); k = 10; }
        iov[n].iov_base = h;
        iov[n++].iov_len = k;
        iov[n].iov_base = payload;
        iov[n++].iov_len = (size_t)len;
        if (n == MAX_IOV) {
            if (send_iov(c, iov, n) < 0) return -1;
            n = 0;
        }
    }
    if (send_iov(c, iov, n) < 0) return -1;
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    if (need > c->in_cap) { /* room for the whole frame (after the writes: iov points into c->in) */
        c->in_cap = need;
        c->in = realloc(c->in, c->in_cap);
    }
    return 0;
}

static int on_readable(conn_t *c) {
    if (c->in_cap - c->in_len < 4096 && c->in_cap < READ_SIZE * 2) {
        c->in_cap *= 2;
        c->in = realloc(c->in, c->in_cap);
    }
    ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (r == 0) return -1;
    if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    c->in_len += (size_t)r;
    if (!c->upgraded && upgrade(c) < 0) return -1;
    if (c->upgraded && frames(c) < 0) return -1;
    if (c->closing && c->out_len == 0) return -1;
    return 0;
}

static int on_writable(conn_t *c) {
    ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (w < 0) return errno == EAGAIN ? 0 : -1;
    c->out_off += (size_t)w;
    if (c->out_off < c->out_len) return 0;
    c->out_off = c->out_len = 0;
    if (c->closing) return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    if (c->upgraded && c->in_len) return frames(c); /* what arrived while paused */
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    }
    if (!port) {
        fprintf(stderr, "usage: %s --port P [--host H]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("floor-c (C, epoll, one read and one writev per readiness)\n");
    fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->in_cap = READ_SIZE;
                    c->in = malloc(c->in_cap);
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            int rc = (evs[i].events & EPOLLOUT) ? on_writable(c) : on_readable(c);
            if (rc < 0 || (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN))) drop(c);
        }
    }
}
