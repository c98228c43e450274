/* row: columns of the current row of a statement into JSON, as the APIs and the
 * queue messages show them: BINARY(16) ids as UUID text, text as strings, SQL
 * NULL as null. */
#ifndef RESTOCK_ROW_H
#define RESTOCK_ROW_H

#include <cjson/cJSON.h>

#include "db.h"

/* Each returns 1 when the member was added, 0 when out of memory. */
int row_add_ident(cJSON *obj, const char *key, db_stmt *st, int col);
int row_add_str(cJSON *obj, const char *key, db_stmt *st, int col);

#endif
