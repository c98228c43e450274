/* row: statement columns into JSON (see row.h). */
#include "config.h"

#include "ident.h"
#include "row.h"

int
row_add_ident(cJSON *obj, const char *key, db_stmt *st, int col)
{
    char text[IDENT_TEXT];
    size_t len;
    const char *bytes = db_stmt_col(st, col, &len);

    ident_format(bytes, len, text);
    if (text[0] == '\0') /* NULL, or not 16 bytes: no id */
        return cJSON_AddNullToObject(obj, key) != NULL;
    return cJSON_AddStringToObject(obj, key, text) != NULL;
}

int
row_add_str(cJSON *obj, const char *key, db_stmt *st, int col)
{
    const char *s = db_stmt_col(st, col, NULL);

    if (s == NULL)
        return cJSON_AddNullToObject(obj, key) != NULL;
    return cJSON_AddStringToObject(obj, key, s) != NULL;
}
