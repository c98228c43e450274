/* conf: restock's configuration. Every parameter of every program is declared once,
 * with its type, default and documentation, in the table of conf.c (as Postfix's
 * main.cf parameters are); values come from the defaults, then the file
 * (`key = value`), then environment variables RESTOCK_<KEY>. */
#ifndef RESTOCK_CONF_H
#define RESTOCK_CONF_H

#include <stdio.h>

#include "errbuf.h"

#define CONF_DEFAULT_PATH "/etc/restock/restock.conf"

typedef struct conf conf;

/* Loads the configuration. path NULL means $RESTOCK_CONFIG, else the default path;
 * the default path may be missing (the embedded defaults then hold), an explicitly
 * named file may not. Unknown keys and invalid values are errors naming the key,
 * the value and where it came from. */
conf *conf_new(const char *path, errbuf *err);
/* Drops the caller's reference (conf_new's or conf_ref's); the last one frees. */
void conf_destroy(conf **self_p);
/* One more reference to a loaded configuration, for a reader that keeps it. */
conf *conf_ref(conf *self);
/* Different for every conf_new of the process: tells a holder that it has an
 * older snapshot than the current one. */
unsigned long conf_generation(const conf *self);

/* Reload (SIGHUP). The process's current configuration: conf_current returns a
 * reference (conf_destroy it when done, at the end of a unit of work, so that the
 * whole unit sees one snapshot) or NULL before conf_set_current. conf_set_current
 * swaps it atomically (it takes its own reference; NULL drops the current). */
conf *conf_current(void);
void conf_set_current(conf *cf);

/* Reads the configuration again from where old came from. NULL with err when it
 * does not load (the caller keeps old). Otherwise the new snapshot, in which
 * every key not listed in changeable (NULL-terminated) that changed keeps its old
 * value and is logged as kept (event=config_kept key=…, a warning); the changed
 * keys that apply are logged by name (never by value: secrets). */
conf *conf_reload(const conf *old, const char *const *changeable, errbuf *err);

/* A program's reload: conf_reload of the current snapshot. Refused: logged
 * (event=reload_failed, with the file's error), NULL, nothing changed. Else its
 * log_level applied, made current, and returned (the caller's reference: it may
 * read what it applies itself, then conf_destroy it). Both counted in
 * restock_config_reloads_total. */
conf *conf_reload_current(const char *const *changeable);

/* 1 when key has another value in b than in a. */
int conf_differs(const conf *a, const conf *b, const char *key);
/* Calls fn for each key whose value differs; returns how many. */
int conf_each_changed(const conf *old, const conf *new_cf, void (*fn)(void *arg, const char *key),
                      void *arg);

/* Values by name. The name must be one of the table's (a typo aborts: it is a bug). */
const char *conf_str(const conf *self, const char *key);
long conf_int(const conf *self, const char *key);

/* The file the values came from, or NULL when only defaults and environment hold. */
const char *conf_path(const conf *self);

/* The start of every restock daemon: options -c FILE and -h, the configuration,
 * and log_init(program) at its log_level. usage writes the help (the options
 * above, and what the program does) to out. Returns the configuration, or NULL
 * with *exit_status set: 0 after -h, 2 for bad usage, 1 for a bad configuration
 * (logged). */
conf *conf_from_args(int argc, char **argv, const char *program, void (*usage)(FILE *out),
                     int *exit_status);

/* Writes a documented configuration file with every key at its default. */
void conf_write_defaults(FILE *out);

/* Writes the effective values, secrets masked, with where each came from. */
void conf_write_effective(const conf *self, FILE *out);

#endif
