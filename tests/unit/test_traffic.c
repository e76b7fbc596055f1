/* Unit tests for the traffic count: the netlink and /proc parsers (sockdiag),
 * the accounting that keeps received bytes monotonic, the quiet rule, the
 * settings, one live sample over loopback, and the metrics that show it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "emf.h"
#include "probe.h"
#include "health.h"
#include "health_report.h"
#include "sockdiag.h"
#include "state.h"
#include "traffic.h"

/* ---- building kernel answers -------------------------------------------- */

struct dgram {
    uint8_t b[4096];
    size_t len;
};

static void put(struct dgram *d, size_t off, const void *v, size_t n)
{
    memcpy(d->b + off, v, n);
}

/* One nlmsghdr; returns the payload offset. */
static size_t msg_begin(struct dgram *d, uint16_t type, uint32_t seq, size_t payload)
{
    size_t off = d->len;
    uint32_t len = (uint32_t)(16 + payload);
    uint16_t flags = 2; /* NLM_F_MULTI */
    uint32_t pid = 0;
    memset(d->b + off, 0, (len + 3) & ~3u);
    put(d, off, &len, 4);
    put(d, off + 4, &type, 2);
    put(d, off + 6, &flags, 2);
    put(d, off + 8, &seq, 4);
    put(d, off + 12, &pid, 4);
    d->len += (len + 3) & ~3u;
    return off + 16;
}

/* An inet_diag_msg; info_len 0 = no INET_DIAG_INFO attribute. */
static void add_sock(struct dgram *d, uint32_t seq, int family, uint8_t state, uint16_t lport,
                     uint16_t rport, const char *raddr, uint64_t cookie, uint32_t inode,
                     uint64_t bytes, size_t info_len)
{
    size_t attr = info_len ? 4 + ((info_len + 3) & ~(size_t)3) : 0;
    size_t m = msg_begin(d, 20, seq, 72 + attr);
    d->b[m] = (uint8_t)family;
    d->b[m + 1] = state;
    uint16_t sp = htons(lport), dp = htons(rport);
    put(d, m + 4, &sp, 2);
    put(d, m + 6, &dp, 2);
    uint8_t a[16] = { 0 };
    if (family == AF_INET)
        inet_pton(AF_INET, raddr, a);
    else
        inet_pton(AF_INET6, raddr, a);
    put(d, m + 4 + 20, a, 16);
    uint32_t c0 = (uint32_t)cookie, c1 = (uint32_t)(cookie >> 32);
    put(d, m + 4 + 40, &c0, 4);
    put(d, m + 4 + 44, &c1, 4);
    put(d, m + 68, &inode, 4);
    if (info_len) {
        uint16_t alen = (uint16_t)(4 + info_len), type = 2;
        put(d, m + 72, &alen, 2);
        put(d, m + 74, &type, 2);
        if (info_len >= 136)
            put(d, m + 76 + 128, &bytes, 8);
    }
}

static void add_done(struct dgram *d, uint32_t seq, int32_t status)
{
    size_t m = msg_begin(d, 3, seq, 4);
    put(d, m, &status, 4);
}

static void add_error(struct dgram *d, uint32_t seq, int32_t error)
{
    size_t m = msg_begin(d, 2, seq, 20);
    put(d, m, &error, 4);
}

struct seen {
    int n;
    struct sockdiag_conn c[8];
};

static void collect(const struct sockdiag_conn *c, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < 8)
        s->c[s->n] = *c;
    s->n++;
}

/* ---- sockdiag: requests and dumps ---------------------------------------- */

static void test_request_asks_for_established_sockets_on_the_port(void **unused)
{
    (void)unused;
    uint8_t req[SOCKDIAG_REQUEST_SIZE];
    assert_int_equal(sockdiag_build_request(req, sizeof req - 1, AF_INET, 8224, 1), 0);
    assert_int_equal(sockdiag_build_request(req, sizeof req, AF_INET6, 8224, 7), SOCKDIAG_REQUEST_SIZE);
    uint32_t len, seq, states;
    uint16_t type, flags, port1, port2;
    memcpy(&len, req, 4);
    memcpy(&type, req + 4, 2);
    memcpy(&flags, req + 6, 2);
    memcpy(&seq, req + 8, 4);
    assert_int_equal(len, SOCKDIAG_REQUEST_SIZE);
    assert_int_equal(type, 20);          /* SOCK_DIAG_BY_FAMILY */
    assert_int_equal(flags, 0x301);      /* NLM_F_REQUEST | NLM_F_DUMP */
    assert_int_equal(seq, 7);
    assert_int_equal(req[16], AF_INET6);
    assert_int_equal(req[17], 6);        /* TCP */
    assert_int_equal(req[18], 2);        /* 1 << (INET_DIAG_INFO - 1) */
    memcpy(&states, req + 20, 4);
    assert_true(states & (1u << 1));     /* established */
    assert_true(states & (1u << 6));     /* time-wait */
    assert_false(states & (1u << 10));   /* never the listener */
    /* bytecode: S_GE port, then S_LE port */
    assert_int_equal(req[72 + 4], 2);
    assert_int_equal(req[72 + 12], 3);
    memcpy(&port1, req + 72 + 4 + 6, 2);
    memcpy(&port2, req + 72 + 4 + 14, 2);
    assert_int_equal(port1, 8224);
    assert_int_equal(port2, 8224);
}

static void test_dump_gives_ports_addresses_cookies_and_bytes(void **unused)
{
    (void)unused;
    struct dgram d = { .len = 0 };
    struct seen s = { 0 };
    int err = -1;
    add_sock(&d, 5, AF_INET, 1, 8224, 40000, "10.0.1.2", 0x1122334455667788ull, 99, 12345, 232);
    add_sock(&d, 5, AF_INET6, 1, 8224, 40001, "::1", 42, 100, 7, 232);
    add_sock(&d, 4, AF_INET, 1, 8224, 40002, "10.0.1.3", 43, 101, 9, 232); /* stale sequence */
    add_sock(&d, 5, AF_INET, 1, 8224, 40003, "10.0.1.4", 44, 102, 0, 64);  /* old kernel */
    assert_int_equal(sockdiag_parse(d.b, d.len, 5, collect, &s, &err), SOCKDIAG_MORE);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.c[0].family, AF_INET);
    assert_int_equal(s.c[0].local_port, 8224);
    assert_int_equal(s.c[0].remote_port, 40000);
    const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 1, 2 };
    assert_memory_equal(s.c[0].remote_addr, mapped, 16);
    assert_true(s.c[0].cookie == 0x1122334455667788ull);
    assert_int_equal(s.c[0].inode, 99);
    assert_true(s.c[0].has_bytes);
    assert_true(s.c[0].bytes_received == 12345);
    assert_int_equal(s.c[1].family, AF_INET6);
    assert_int_equal(s.c[1].remote_addr[15], 1);
    assert_true(s.c[1].bytes_received == 7);
    assert_false(s.c[2].has_bytes);

    struct dgram done = { .len = 0 };
    add_done(&done, 5, 0);
    assert_int_equal(sockdiag_parse(done.b, done.len, 5, collect, &s, &err), SOCKDIAG_DONE);
}

static void test_dump_errors_name_the_kernel_errno(void **unused)
{
    (void)unused;
    struct dgram d = { .len = 0 };
    struct seen s = { 0 };
    int err = 0;
    add_error(&d, 3, -EPERM);
    assert_int_equal(sockdiag_parse(d.b, d.len, 3, collect, &s, &err), SOCKDIAG_FAILED);
    assert_int_equal(err, EPERM);

    struct dgram dd = { .len = 0 };
    add_done(&dd, 3, -EINTR);
    assert_int_equal(sockdiag_parse(dd.b, dd.len, 3, collect, &s, &err), SOCKDIAG_FAILED);
    assert_int_equal(err, EINTR);

    /* a forged code outside errno's range, INT32_MIN included, reads as EIO */
    struct dgram bad = { .len = 0 };
    add_done(&bad, 3, -65536);
    assert_int_equal(sockdiag_parse(bad.b, bad.len, 3, collect, &s, &err), SOCKDIAG_FAILED);
    assert_int_equal(err, EIO);
    struct dgram worst = { .len = 0 };
    add_done(&worst, 3, INT32_MIN);
    assert_int_equal(sockdiag_parse(worst.b, worst.len, 3, collect, &s, &err), SOCKDIAG_FAILED);
    assert_int_equal(err, EIO);

    struct dgram ack = { .len = 0 };
    add_error(&ack, 3, 0); /* an acknowledgement is not an error */
    assert_int_equal(sockdiag_parse(ack.b, ack.len, 3, collect, &s, &err), SOCKDIAG_MORE);
}

static void test_dump_that_does_not_fit_is_malformed(void **unused)
{
    (void)unused;
    struct dgram d = { .len = 0 };
    struct seen s = { 0 };
    int err;
    add_sock(&d, 1, AF_INET, 1, 8224, 1, "127.0.0.1", 1, 1, 1, 232);
    /* Cut inside the message. */
    assert_int_equal(sockdiag_parse(d.b, d.len - 8, 1, collect, &s, &err), SOCKDIAG_MALFORMED);
    /* An attribute longer than its message. */
    uint16_t big = 4000;
    memcpy(d.b + 16 + 72, &big, 2);
    assert_int_equal(sockdiag_parse(d.b, d.len, 1, collect, &s, &err), SOCKDIAG_MALFORMED);
    /* A message shorter than inet_diag_msg. */
    struct dgram shortm = { .len = 0 };
    msg_begin(&shortm, 20, 1, 8);
    assert_int_equal(sockdiag_parse(shortm.b, shortm.len, 1, collect, &s, &err), SOCKDIAG_MALFORMED);
    /* A header claiming less than itself. */
    uint32_t tiny = 8;
    memcpy(shortm.b, &tiny, 4);
    assert_int_equal(sockdiag_parse(shortm.b, shortm.len, 1, collect, &s, &err), SOCKDIAG_MALFORMED);
    assert_int_equal(s.n, 0);
}

/* ---- sockdiag: /proc/net/tcp --------------------------------------------- */

static void test_proc_lines_v4_and_v6(void **unused)
{
    (void)unused;
    struct sockdiag_conn c;
    const char *hdr = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
                      "retrnsmt   uid  timeout inode";
    assert_int_equal(sockdiag_proc_line(hdr, strlen(hdr), AF_INET, &c), 0);
    const char *v4 = "   3: 0100007F:2020 0100007F:D431 01 00000000:00000000 00:00000000 "
                     "00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1";
    assert_int_equal(sockdiag_proc_line(v4, strlen(v4), AF_INET, &c), 1);
    assert_int_equal(c.local_port, 8224);
    assert_int_equal(c.remote_port, 0xD431);
    assert_int_equal(c.state, 1);
    assert_int_equal(c.inode, 424242);
    uint32_t lo = htonl(INADDR_LOOPBACK);
    assert_memory_equal(c.remote_addr + 12, &lo, 4);
    assert_int_equal(c.remote_addr[10], 0xff);
    assert_false(c.has_bytes);

    const char *v6 = "   0: 00000000000000000000000001000000:2020 "
                     "00000000000000000000000001000000:9C40 01 00000000:00000000 00:00000000 "
                     "00000000     0        0 77 1 0000000000000000 20 4 0 10 -1";
    assert_int_equal(sockdiag_proc_line(v6, strlen(v6), AF_INET6, &c), 1);
    struct in6_addr one = IN6ADDR_LOOPBACK_INIT;
    assert_memory_equal(c.remote_addr, &one, 16);
    assert_int_equal(c.remote_port, 40000);
    assert_int_equal(c.inode, 77);

    /* Truncated lines do not parse. */
    for (size_t n = 0; n < 60; n++)
        assert_int_equal(sockdiag_proc_line(v4, n, AF_INET, &c), 0);
    assert_int_equal(sockdiag_proc_line(v4, strlen(v4), 99, &c), 0);
}

static void test_proc_parse_keeps_the_partial_line(void **unused)
{
    (void)unused;
    struct seen s = { 0 };
    const char *text = "  sl  local_address\n"
                       "   0: 0100007F:2020 0100007F:D431 01 00000000:00000000 00:00000000 "
                       "00000000  1000        0 5 1\n"
                       "   1: 0100007F:20";
    size_t used = sockdiag_proc_parse(text, strlen(text), AF_INET, collect, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(used, strchr(strchr(text, '\n') + 1, '\n') + 1 - text);
}

/* ---- accounting and the quiet rule --------------------------------------- */

static void test_received_bytes_stay_monotonic_across_churn(void **unused)
{
    (void)unused;
    size_t fresh;
    struct traffic_conn s1[] = { { 30, 100 }, { 10, 50 } };
    assert_true(traffic_account(NULL, 0, s1, 2, &fresh) == 150);
    assert_int_equal(fresh, 2);
    assert_true(s1[0].key == 10); /* sorted for the next round */

    /* 10 grew by 25, 30 closed (its 100 stay counted), 20 is new with 40. */
    struct traffic_conn s2[] = { { 20, 40 }, { 10, 75 } };
    assert_true(traffic_account(s1, 2, s2, 2, &fresh) == 25 + 40);
    assert_int_equal(fresh, 1);

    /* Nothing new: nothing received. A counter that went back (a reused key)
     * adds nothing. */
    struct traffic_conn s3[] = { { 10, 75 }, { 20, 10 } };
    assert_true(traffic_account(s2, 2, s3, 2, &fresh) == 0);
    assert_int_equal(fresh, 0);
}

static void test_quiet_counts_from_the_stop_or_the_last_traffic(void **unused)
{
    (void)unused;
    /* No traffic since long before the stop: quiet time after the stop. */
    assert_false(traffic_quiet(10000, 1000, 14999, 5000));
    assert_true(traffic_quiet(10000, 1000, 15000, 5000));
    /* Traffic after the stop: quiet time after it. */
    assert_false(traffic_quiet(10000, 12000, 16000, 5000));
    assert_true(traffic_quiet(10000, 12000, 17000, 5000));
    /* No sample since the stop: not known to be quiet. */
    assert_false(traffic_quiet(10000, 0, 9000, 0));
}

static void test_last_traffic_described(void **unused)
{
    (void)unused;
    struct traffic_state ts = { 0 };
    char buf[40];
    traffic_describe_last(&ts, buf, sizeof buf);
    assert_string_equal(buf, "never");
    ts.last_activity_wall_ms = 1700000000123ull;
    traffic_describe_last(&ts, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
}

/* ---- settings ------------------------------------------------------------- */

static void clear_env(void)
{
    unsetenv("PI_AGENT_TRAFFIC");
    unsetenv("PI_AGENT_DRAIN_QUIET_SECONDS");
    unsetenv("PI_AGENT_DRAIN_SECONDS");
    unsetenv("PI_AGENT_PROBE_URL");
}

static int load(struct traffic_config *tc, struct config_error *err)
{
    struct probe_config pc;
    struct emf_config ec;
    struct agent_config ac;
    if (probe_config_load(&pc, err) != 0 || emf_config_load(&ec, err) != 0 ||
        agent_config_load(&ac, NULL, err) != 0)
        return -2;
    unsigned drain_s = ac.drain_s;
    agent_config_free(&ac);
    return traffic_config_load(tc, &pc, &ec, drain_s, err);
}

static void test_settings(void **unused)
{
    (void)unused;
    struct traffic_config tc;
    struct config_error err = { "" };

    clear_env();
    assert_int_equal(load(&tc, &err), 0);
    assert_int_equal(tc.source, TRAFFIC_AUTO);
    assert_int_equal(tc.port, 8224);
    assert_int_equal(tc.drain_quiet_s, 0);

    setenv("PI_AGENT_PROBE_URL", "http://[::1]:9000/x", 1);
    setenv("PI_AGENT_TRAFFIC", "proc", 1);
    setenv("PI_AGENT_DRAIN_SECONDS", "60", 1);
    setenv("PI_AGENT_DRAIN_QUIET_SECONDS", "15", 1);
    assert_int_equal(load(&tc, &err), 0);
    assert_int_equal(tc.port, 9000);
    assert_int_equal(tc.source, TRAFFIC_PROC);
    assert_int_equal(tc.drain_quiet_s, 15);

    setenv("PI_AGENT_TRAFFIC", "sometimes", 1);
    assert_int_equal(load(&tc, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_TRAFFIC"));

    unsetenv("PI_AGENT_TRAFFIC");
    setenv("PI_AGENT_DRAIN_QUIET_SECONDS", "60", 1);
    assert_int_equal(load(&tc, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_DRAIN_QUIET_SECONDS"));
    assert_non_null(strstr(err.msg, "PI_AGENT_DRAIN_SECONDS (60)"));

    setenv("PI_AGENT_DRAIN_QUIET_SECONDS", "10", 1);
    setenv("PI_AGENT_TRAFFIC", "off", 1);
    assert_int_equal(load(&tc, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_TRAFFIC is off"));

    unsetenv("PI_AGENT_TRAFFIC");
    setenv("PI_AGENT_PROBE_URL", "off", 1);
    assert_int_equal(load(&tc, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_PROBE_URL is off"));

    unsetenv("PI_AGENT_DRAIN_QUIET_SECONDS");
    assert_int_equal(load(&tc, &err), 0);
    assert_int_equal(tc.source, TRAFFIC_OFF);
    setenv("PI_AGENT_TRAFFIC", "netlink", 1);
    assert_int_equal(load(&tc, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_TRAFFIC"));
    clear_env();
}

/* ---- a live sample over loopback ----------------------------------------- */

static void test_live_sample_counts_bytes_and_leaves_out_the_probe(void **unused)
{
    (void)unused;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    uint16_t port = ntohs(a.sin_port);

    int c1 = socket(AF_INET, SOCK_STREAM, 0), c2 = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c1, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(connect(c2, (struct sockaddr *)&a, sizeof a), 0);
    int s1 = accept(lfd, NULL, NULL), s2 = accept(lfd, NULL, NULL);
    assert_true(s1 >= 0 && s2 >= 0);
    char data[3000];
    memset(data, 'x', sizeof data);
    assert_int_equal(send(c1, data, sizeof data, 0), (ssize_t)sizeof data);
    assert_int_equal(send(c2, data, 100, 0), 100);

    struct traffic_sample out;
    assert_int_equal(traffic_sample_once(TRAFFIC_NETLINK, port, NULL, 0, &out), 0);
    assert_true(out.connections == 2);
    assert_true(out.has_bytes);
    assert_true(out.bytes == 3100);

    /* c2's end, as the probe would remember it, is left out. */
    struct sockaddr_in own;
    socklen_t olen = sizeof own;
    assert_int_equal(getsockname(c2, (struct sockaddr *)&own, &olen), 0);
    struct probe_peer peer = { .port = ntohs(own.sin_port) };
    peer.addr[10] = peer.addr[11] = 0xff;
    memcpy(peer.addr + 12, &own.sin_addr, 4);
    assert_int_equal(traffic_sample_once(TRAFFIC_NETLINK, port, &peer, 1, &out), 0);
    assert_true(out.connections == 1);
    assert_true(out.bytes == 3000);

    assert_int_equal(traffic_sample_once(TRAFFIC_PROC, port, &peer, 1, &out), 0);
    assert_true(out.connections == 1);
    assert_false(out.has_bytes);

    /* Tomcat closes first, then the client: the server's end waits in
     * TIME_WAIT, a trace of a connection that is gone. (Unread data would
     * make the close a reset.) */
    size_t got = 0;
    while (got < sizeof data) {
        ssize_t n = recv(s1, data, sizeof data - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(s1);
    close(c1);
    assert_int_equal(traffic_sample_once(TRAFFIC_NETLINK, port, NULL, 0, &out), 0);
    assert_true(out.connections == 1);
    assert_true(out.closing == 1);
    assert_true(out.bytes == 100);

    close(c2);
    close(s2);
    close(lfd);
}

/* ---- what /metrics and EMF show ------------------------------------------- */

static void test_metrics_and_emf_show_the_traffic(void **unused)
{
    (void)unused;
    static struct agent_state st;
    struct health_policy policy = { 0 };
    struct health_verdict v;
    char buf[65536];

    memset(&st, 0, sizeof st);
    health_evaluate(&st, &policy, &v);
    assert_true(health_render_metrics(&st, &v, 0, buf, sizeof buf) > 0);
    assert_null(strstr(buf, "pi_tomcat_connections"));
    assert_non_null(strstr(buf, "pi_tomcat_probe_seconds "));
    assert_true(emf_render(&st, &v, "NS", 1, buf, sizeof buf) > 0);
    assert_null(strstr(buf, "TomcatConnections"));

    st.traffic.sampled = true;
    st.traffic.connections = 12;
    st.traffic.has_bytes = true;
    st.traffic.received_bytes = 123456;
    st.traffic.has_rate = true;
    st.traffic.received_bytes_per_s = 2048;
    health_evaluate(&st, &policy, &v);
    assert_true(health_render_metrics(&st, &v, 0, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "# TYPE pi_tomcat_connections gauge\npi_tomcat_connections 12\n"));
    assert_non_null(strstr(buf, "# TYPE pi_tomcat_received_bytes_total counter\n"
                                "pi_tomcat_received_bytes_total 123456\n"));
    assert_true(emf_render(&st, &v, "NS", 1, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "{\"Name\":\"TomcatConnections\",\"Unit\":\"Count\"}"));
    assert_non_null(strstr(buf, "{\"Name\":\"TomcatReceivedBytesPerSecond\",\"Unit\":\"Bytes/Second\"}"));
    assert_non_null(strstr(buf, "\"TomcatConnections\":12"));
    assert_non_null(strstr(buf, "\"TomcatReceivedBytesPerSecond\":2048"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_asks_for_established_sockets_on_the_port),
        cmocka_unit_test(test_dump_gives_ports_addresses_cookies_and_bytes),
        cmocka_unit_test(test_dump_errors_name_the_kernel_errno),
        cmocka_unit_test(test_dump_that_does_not_fit_is_malformed),
        cmocka_unit_test(test_proc_lines_v4_and_v6),
        cmocka_unit_test(test_proc_parse_keeps_the_partial_line),
        cmocka_unit_test(test_received_bytes_stay_monotonic_across_churn),
        cmocka_unit_test(test_quiet_counts_from_the_stop_or_the_last_traffic),
        cmocka_unit_test(test_last_traffic_described),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_live_sample_counts_bytes_and_leaves_out_the_probe),
        cmocka_unit_test(test_metrics_and_emf_show_the_traffic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
