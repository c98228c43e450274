/* notify: tells the service manager (systemd, Type=notify) how a program stands:
 * ready to serve, stopping. Without a manager ($NOTIFY_SOCKET unset: the local
 * stack, the tests) every call does nothing. */
#ifndef RESTOCK_NOTIFY_H
#define RESTOCK_NOTIFY_H

/* The program serves: its sockets listen and its configuration is valid. status is
 * the one-line state `systemctl status` shows. Until then, `systemctl start` waits,
 * and fails if the program exits first. */
void notify_ready(const char *status);

/* The program re-reads its configuration (SIGHUP); notify_ready follows. */
void notify_reloading(void);

/* The program has begun to stop (requests or deliveries in flight still finish). */
void notify_stopping(void);

#endif
