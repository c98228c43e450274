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
void conf_destroy(conf **self_p);

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
