/* migrate: applies the numbered SQL migrations (NNN_name.sql) of a folder that the
 * database has not recorded yet, in order, and records each one. Safe to run twice
 * and from two hosts at once: a lock row in schema_lock serialises runs
 * cluster-wide (GET_LOCK is node-local in Galera). */
#ifndef RESTOCK_MIGRATE_H
#define RESTOCK_MIGRATE_H

#include <stdio.h>

#include "db.h"
#include "errbuf.h"

/* Applies what is pending; reports each applied file on out. Returns the number
 * applied, or -1. The db must have been made with DB_MULTI_STATEMENTS. */
int migrate_apply(db *conn, const char *dir, FILE *out, errbuf *err);

#endif
