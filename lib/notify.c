/* notify: systemd's readiness protocol (see notify.h), through libsystemd. */
#include "config.h"

#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "notify.h"

void
notify_ready(const char *status)
{
    /* A failure here is the manager's socket gone: the manager then no longer
     * waits for us, so it is worth a line, not a stop. */
    int rc = sd_notifyf(0, "READY=1\nSTATUS=%s", status);

    if (rc < 0)
        log_warn("event=notify_failed what=READY error=\"%s\"", strerror(-rc));
}

void
notify_stopping(void)
{
    int rc = sd_notify(0, "STOPPING=1\nSTATUS=stopping");

    if (rc < 0)
        log_warn("event=notify_failed what=STOPPING error=\"%s\"", strerror(-rc));
}

void
notify_reloading(void)
{
    /* RELOADING=1 then READY=1 when done: systemctl reload waits for it with
     * Type=notify-reload (systemd 253); older ones ignore the line. */
    int rc = sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");

    if (rc < 0)
        log_warn("event=notify_failed what=RELOADING error=\"%s\"", strerror(-rc));
}
