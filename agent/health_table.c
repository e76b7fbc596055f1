/* health_table: the health server's connection table. See health_server.h.
 * Each pool keeps its connections in one list per class, in the order they
 * entered it, so eviction takes the one waiting longest; connections per
 * source address are counted for the cap. */
#include "health_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

void class_unlink(struct conn *c)
{
    struct pool *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->head[c->cls] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        p->tail[c->cls] = c->prev;
    c->prev = c->next = NULL;
}

void class_append(struct conn *c, enum conn_class cls)
{
    struct pool *p = c->pool;
    c->cls = cls;
    c->next = NULL;
    c->prev = p->tail[cls];
    if (p->tail[cls])
        p->tail[cls]->next = c;
    else
        p->head[cls] = c;
    p->tail[cls] = c;
}

/* Files the connection under what it is doing now. Called whenever one of
 * its events has been handled; a connection that was answered goes to the
 * tail of its list, so "oldest" means "waiting longest". */
void conn_settle(struct conn *c)
{
    enum conn_class cls;
    if (c->lingering || c->writing || c->out_len > c->out_off)
        cls = CLASS_BUSY;
    else if (c->in_len > 0 || c->body_left > 0)
        cls = CLASS_PARTIAL;
    else
        cls = CLASS_WAITING;
    if (cls == c->cls && !c->renewed)
        return;
    c->renewed = false;
    class_unlink(c);
    class_append(c, cls);
}

/* The connection to close to make room: the one waiting longest for a
 * request, else the one longest in the middle of one; only peer's own when
 * peer is given. NULL when every candidate is busy answering. */
struct conn *pick_victim(struct pool *p, const struct peer *peer)
{
    for (int cls = CLASS_WAITING; cls <= CLASS_PARTIAL; cls++)
        for (struct conn *c = p->head[cls]; c; c = c->next)
            if (peer == NULL || c->peer == peer)
                return c;
    return NULL;
}

/* IPv4 addresses (also IPv4-mapped IPv6) count one by one; IPv6 by /64,
 * the smallest block one host is usually given. */
static void peer_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET) {
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        key[10] = key[11] = 0xff;
    } else if (ss->ss_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a, mapped, 12) == 0)
            memcpy(key, a, 16);
        else
            memcpy(key, a, 8);
    }
}

static unsigned peer_bucket(const struct health_server *srv, const unsigned char key[16])
{
    uint32_t h = 2166136261u ^ srv->peer_seed; /* FNV-1a, seeded */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (srv->peer_buckets - 1);
}

/* Counts one more connection for the address; NULL when out of memory. */
struct peer *peer_hold(struct health_server *srv, const struct sockaddr_storage *ss)
{
    if (srv->peers == NULL) {
        unsigned n = 16;
        while (n < srv->cfg->max_connections)
            n *= 2;
        if ((srv->peers = calloc(n, sizeof *srv->peers)) == NULL)
            return NULL;
        srv->peer_buckets = n;
        srv->peer_seed = (uint32_t)loop_now_ms() ^ (uint32_t)(uintptr_t)srv;
    }
    unsigned char key[16];
    peer_key(ss, key);
    unsigned b = peer_bucket(srv, key);
    struct peer *p;
    for (p = srv->peers[b]; p; p = p->next)
        if (memcmp(p->key, key, 16) == 0)
            break;
    if (p == NULL) {
        if ((p = calloc(1, sizeof *p)) == NULL)
            return NULL;
        memcpy(p->key, key, 16);
        p->next = srv->peers[b];
        srv->peers[b] = p;
    }
    p->count++;
    return p;
}

void peer_release(struct health_server *srv, struct peer *p)
{
    if (p == NULL || --p->count > 0)
        return;
    struct peer **link = &srv->peers[peer_bucket(srv, p->key)];
    while (*link != p)
        link = &(*link)->next;
    *link = p->next;
    free(p);
}

void peer_name(const struct peer *p, char *buf, size_t cap)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    char a[INET6_ADDRSTRLEN] = "?";
    if (memcmp(p->key, mapped, 12) == 0) {
        inet_ntop(AF_INET, p->key + 12, a, sizeof a);
        snprintf(buf, cap, "%s", a);
    } else {
        inet_ntop(AF_INET6, p->key, a, sizeof a);
        snprintf(buf, cap, "%s/64", a);
    }
}
